"""The per-layer diagonal ``diag(d)`` that ResidualLinear and LowRankLinear add to a weight.

A ``m x n`` weight's diagonal has ``k = min(m, n)`` entries on its leading diagonal: output
``i < k`` reads input ``i``. Both modules add it in the same two places, so both use these:
:func:`with_diagonal` when a dense weight is built (merged paths, ``merge``, ONNX export) and
:func:`add_diagonal` on activations (factored paths), where autocast is handled once: under
autocast the main product is in the low-precision dtype, and the diagonal term follows it so
that every path gives the same output dtype. Both are out of place (``torch.onnx.export``
refuses in-place updates).
"""

from __future__ import annotations

import torch
from torch import Tensor


def with_diagonal(weight: Tensor, d: Tensor | None) -> Tensor:
    """``weight + diag(d)`` on the leading diagonal (``weight`` itself when ``d`` is None)."""
    if d is None:
        return weight
    return torch.diagonal_scatter(weight, weight.diagonal() + d)


def add_diagonal(y: Tensor, x: Tensor, d: Tensor | None) -> Tensor:
    """``y + x diag(d)^T`` for ``y`` (..., m) and ``x`` (..., n): output ``i < k`` gains
    ``d_i x_i``. ``y`` when ``d`` is None."""
    if d is None:
        return y
    if x.dtype != y.dtype:
        x, d = x.to(y.dtype), d.to(y.dtype)
    k = d.shape[0]
    m, n = y.shape[-1], x.shape[-1]
    if m == n:
        return torch.addcmul(y, x, d)
    if m < n:  # more inputs than outputs: the diagonal reads the leading m inputs
        return torch.addcmul(y, x[..., :k], d)
    return torch.cat([torch.addcmul(y[..., :k], x, d), y[..., k:]], dim=-1)
