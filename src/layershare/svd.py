"""SVD helpers for initialising shared and low-rank factors from dense weights.

All factorisations run in float64 and are cast back, so that a full-rank factorisation
reproduces the dense weight to float32 round-off.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import INITS  # noqa: F401  (the choices live with ShareConfig, torch-free)
from .errors import LayershareError


def truncated_svd(W: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Best rank-``rank`` factors ``A (m x r)``, ``B (r x n)`` with ``A @ B ~ W``.

    ``A = U_r sqrt(Sigma_r)``, ``B = sqrt(Sigma_r) V_r^T`` (LightFormer's "SVD-based weight
    transfer" splits the singular values evenly so both factors have the same scale). By
    Eckart-Young, ``||W - A B||_F^2`` is the sum of the squared dropped singular values.

    Computed from the eigendecomposition of the smaller Gram matrix (``W^T W`` or ``W W^T``)
    in float64: on CPU it is faster than ``torch.linalg.svd`` and ``A B`` is then exactly
    the projection of ``W`` onto its top-r singular subspace, so full rank reproduces ``W``.
    Directions with a (numerically) zero singular value get zero factors.
    """
    if rank < 1:
        raise ValueError(f"truncated_svd needs rank >= 1, got {rank}")
    W64 = W.detach().double()
    wide = W64.shape[0] < W64.shape[1]
    G = W64 @ W64.T if wide else W64.T @ W64
    evals, vecs = torch.linalg.eigh(G)               # ascending
    top = vecs[:, -rank:].flip(-1)                   # U_r if wide else V_r
    sigma = evals[-rank:].flip(-1).clamp_min(0).sqrt()
    tol = sigma.max().clamp_min(1e-300) * max(W64.shape) * torch.finfo(torch.float64).eps
    root = sigma.sqrt()
    inv_root = torch.where(sigma > tol, 1 / root.clamp_min(1e-150), torch.zeros_like(root))
    if wide:   # A = U_r sqrt(S), B = sqrt(S) V_r^T = S^-1/2 U_r^T W
        A, B = top * root, inv_root[:, None] * (top.T @ W64)
    else:      # A = U_r sqrt(S) = W V_r S^-1/2, B = sqrt(S) V_r^T
        A, B = (W64 @ top) * inv_root, root[:, None] * top.T
    return A.to(W.dtype), B.to(W.dtype)


def shared_basis(weights: list[Tensor], rank: int) -> tuple[Tensor, list[Tensor]]:
    """Basis Sharing (ICLR 2025): one basis for a group's matrices, a coefficient per matrix.

    Stack the group's ``m x n`` matrices side by side, ``[W_1 ... W_K] ~ U_r Sigma_r V_r^T``;
    the shared basis is ``U_r sqrt(Sigma_r)`` (m x r) and matrix ``k`` keeps its own
    ``sqrt(Sigma_r) V_r^T[:, k-th block]`` (r x n). For one matrix this is ``truncated_svd``.
    """
    A, B = truncated_svd(torch.cat(weights, dim=1), rank)
    return A, list(B.split(weights[0].shape[1], dim=1))


def random_factors(weights: list[Tensor], rank: int) -> tuple[Tensor, list[Tensor]]:
    """From-scratch low-rank factors: Gaussian ``U`` (m x r) and ``V_k`` (r x n) whose product
    has the entry variance of the dense initialisation (each factor entry has variance
    ``(var_w / r)^(1/2)``), with no SVD: for training from scratch and for rebuilding a
    model's structure before loading a checkpoint into it."""
    m, n = weights[0].shape
    kw = dict(dtype=weights[0].dtype, device=weights[0].device)
    if weights[0].is_meta:  # structure only (``load_structure``): shapes, no values
        return torch.empty(m, rank, **kw), [torch.empty(rank, n, **kw) for _ in weights]
    std = (torch.stack([w.detach().float() for w in weights]).var() / rank).pow(0.25).item()
    return (torch.randn(m, rank, **kw) * std,
            [torch.randn(rank, n, **kw) * std for _ in weights])


def stepwise_layer(group: int, num_groups: int, num_layers: int) -> int:
    """The stack layer whose weight group ``group`` takes under ``init="stepwise"``."""
    return group * num_layers // num_groups


def pick_shared(weights: list[Tensor], init: str, stepwise: Tensor | None = None) -> Tensor:
    """The full-rank weight a group starts from.

    ``weights`` are the group members' dense tensors (in stack order). Inits follow Relaxed
    Recursive Transformers (Bae et al., ICLR 2025): ``mean`` averages the members; ``first``
    (RRT's "lower") takes the first member; ``stepwise`` takes ``stepwise``, the dense weight of
    stack layer ``stepwise_layer(g, G, L)`` for group ``g`` of ``G``, which for ``cycle`` plans
    is a layer outside the group; ``scratch`` behaves as ``first`` (every layer of a group then
    starts equal to it).
    """
    if init not in INITS:
        raise LayershareError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if init == "mean":
        return torch.stack([w.detach() for w in weights]).mean(0)
    if init == "stepwise":
        return stepwise.detach().clone()
    return weights[0].detach().clone()
