"""Rows of token ids <-> padded id tensors: :func:`pad` on the way into a model,
:func:`strip_ids` on the way out of a decoder.

Its own module because both the tasks (batches) and the decoder (sources in, hypotheses
out) need them, and neither of those may import the other.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data import EOS_ID, PAD_ID


def pad(rows: list[list[int]], value: int = PAD_ID) -> Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def strip_ids(row: list[int]) -> list[int]:
    """Ids up to the first eos, without pad."""
    out = []
    for t in row:
        if t == EOS_ID:
            break
        if t != PAD_ID:
            out.append(t)
    return out
