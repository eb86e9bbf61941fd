"""SVD helpers for initialising shared and low-rank factors from dense weights.

All factorisations run in float64 and are cast back, so that a full-rank factorisation
reproduces the dense weight to float32 round-off.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import LayershareError

INITS = ("mean", "first", "stepwise", "scratch")


def truncated_svd(W: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Best rank-``rank`` factors ``A (m x r)``, ``B (r x n)`` with ``A @ B ~ W``.

    ``A = U_r sqrt(Sigma_r)``, ``B = sqrt(Sigma_r) V_r^T`` (LightFormer's "SVD-based weight
    transfer" splits the singular values evenly so both factors have the same scale). By
    Eckart-Young, ``||W - A B||_F^2`` is the sum of the squared dropped singular values.
    """
    U, S, Vh = torch.linalg.svd(W.detach().double(), full_matrices=False)
    root = S[:rank].sqrt()
    return (U[:, :rank] * root).to(W.dtype), (root[:, None] * Vh[:rank]).to(W.dtype)


def shared_basis(weights: list[Tensor], rank: int) -> tuple[Tensor, list[Tensor]]:
    """Basis Sharing (ICLR 2025): one basis for a group's matrices, a coefficient per matrix.

    Stack the group's ``m x n`` matrices side by side, ``[W_1 ... W_K] ~ U_r Sigma_r V_r^T``;
    the shared basis is ``U_r sqrt(Sigma_r)`` (m x r) and matrix ``k`` keeps its own
    ``sqrt(Sigma_r) V_r^T[:, k-th block]`` (r x n). For one matrix this is ``truncated_svd``.
    """
    A, B = truncated_svd(torch.cat(weights, dim=1), rank)
    return A, list(B.split(weights[0].shape[1], dim=1))


def pick_shared(weights: list[Tensor], init: str, group: int, num_groups: int,
                stack: list[Tensor]) -> Tensor:
    """The full-rank weight a group starts from.

    ``weights`` are the group members' dense tensors (in stack order), ``stack`` those of all
    layers. Inits follow Relaxed Recursive Transformers (Bae et al., ICLR 2025):
    ``mean`` averages the members; ``first`` (RRT's "lower") takes the first member;
    ``stepwise`` takes stack layer ``floor(g * L / G)`` for group ``g`` of ``G``, which for
    ``cycle`` plans is a layer outside the group; ``scratch`` behaves as ``first`` (every layer
    of a group then starts equal to it).
    """
    if init not in INITS:
        raise LayershareError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if init == "mean":
        return torch.stack([w.detach() for w in weights]).mean(0)
    if init == "stepwise":
        return stack[group * len(stack) // num_groups].detach().clone()
    return weights[0].detach().clone()
