"""Weight-only int8 for any PyTorch model, shared tensors included: quality and bytes.

Every weight matrix (every parameter of two or more dimensions: linear and convolution
weights, a ResidualTransformer's shared ``S`` and its factors ``A``, ``B``) is rounded to
8-bit integers with one float32 scale per output row, symmetric: ``q = round(w / s)``,
``s = max|w_row| / 127``. One-dimensional parameters (biases, norms, residual diagonals)
stay float32, as in every int8 scheme. A tensor shared by several layers is quantized and
counted once, so "sharing + int8" is measured at the bytes it would really occupy. An
empty matrix (the rank-0 factors of a ResidualTransformer without its low-rank term) holds
nothing: it is left as it is and costs no bytes, scales included.

:func:`quantize_int8_` replaces the weights by their dequantized values in place, which is
exactly the function an int8 kernel computes up to accumulation order, so the quality of
the int8 model is measured with ordinary PyTorch code; the bytes are those of the int8
tensors plus scales (:func:`int8_bytes`), not of the float copy held in memory here.
"""

from __future__ import annotations

import torch
from torch import nn


def _unique_parameters(model: nn.Module):
    seen = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in seen:
            seen.add(id(p))
            yield name, p


def int8_bytes(module: nn.Module) -> int:
    """Bytes of ``module``'s unique parameters with matrices in int8 (+ a float32 scale per
    row) and everything one-dimensional in float32."""
    total = 0
    for _, p in _unique_parameters(module):
        if p.numel() == 0:
            continue
        if p.dim() >= 2:
            total += p.numel() + 4 * p.shape[0]
        else:
            total += 4 * p.numel()
    return total


def fp32_bytes(module: nn.Module) -> int:
    """Bytes of ``module``'s unique parameters in float32."""
    return 4 * sum(p.numel() for _, p in _unique_parameters(module))


@torch.no_grad()
def quantize_int8_(model: nn.Module) -> nn.Module:
    """Round every unique weight matrix of ``model`` to per-row symmetric int8, in place
    (stored dequantized, see the module doc); returns the model."""
    for _, p in _unique_parameters(model):
        if p.dim() >= 2 and p.numel() > 0:  # an empty row has no maximum to scale by
            rows = p.reshape(p.shape[0], -1)
            scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
            p.copy_((torch.round(rows / scale).clamp(-127, 127) * scale).reshape(p.shape))
    return model
