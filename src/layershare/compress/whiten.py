"""Calibration-aware fits: the best factors in the metric of the data, ``||(W - W') X^T||_F``.

``X`` (tokens x n) holds a matrix's calibration inputs and ``G = X^T X`` their Gram matrix
(float64). For any square root ``S`` of G (``S S^T = G``: Cholesky, or an eigen-decomposition
root when G is singular), ``||(W - W') X^T||_F^2 = tr((W - W') G (W - W')^T)
= ||(W - W') S||_F^2``: the data metric is the Frobenius norm after whitening by ``S``.

**Whitened truncated SVD** (SVD-LLM, ICLR 2025). Let ``W S = U Sigma V^T``. By Eckart-Young
the best rank-r ``W' S`` is ``U_r Sigma_r V_r^T``, so ``W' = U_r Sigma_r V_r^T S^-1
= U_r U_r^T W`` (as ``U_r Sigma_r V_r^T = U_r U_r^T W S``): the optimum projects W's columns
onto the top-r left singular vectors of ``W S``, and its error is ``sum_{i > r} sigma_i^2``.
Written as ``U_r U_r^T W`` it needs no ``S^-1`` and stays optimal when G is singular. The left
singular vectors are the eigenvectors of ``(W S)(W S)^T = W G W^T`` (m x m, needs no root at
all); when m > n the n x n problem ``(W S)^T (W S) = S^T W^T W S`` is cheaper and
``U_r = W S V_r Sigma_r^-1``. Stored as ``A = U_r Sigma_r^(1/2)`` (m x r), ``B = Sigma_r^(-1/2)
U_r^T W`` (r x n): ``A B = U_r U_r^T W`` and, whitened, ``A (B S) = U_r Sigma_r^(1/2) .
Sigma_r^(1/2) V_r^T``, the balanced split of LightFormer's weight transfer.

**Basis Sharing with whitening** (ICLR 2025): the K matrices of a group side by side,
``[W_1 S_1 ... W_K S_K] = U Sigma V^T``; the shared basis is ``A = U_r Sigma_r^(1/2)`` and
layer k keeps ``B_k = Sigma_r^(-1/2) U_r^T W_k``, again the optimum for that basis (the
whitened least-squares coefficient of ``W_k`` on an orthonormal ``U_r`` is ``U_r^T W_k``). The
total whitened error is the sum of the dropped ``sigma_i^2``; U comes from
``sum_k W_k G_k W_k^T``.

**Residual** (ResidualTransformer): ``W_l ~ S_g + A_l B_l + diag(d_l)``. With ``S_g`` fixed
(mean, first or stepwise of the group), ``A_l B_l`` is the whitened truncated SVD of
``Delta = W_l - S_g``; then the diagonal minimises the remaining whitened error. With
``R = Delta - A_l B_l`` and D diagonal (entries ``d_i`` at (i, i), i < min(m, n)), the error
``tr((R - D) G (R - D)^T)`` is a sum over rows; row i alone is
``r_i G r_i^T - 2 d_i (R G)_ii + d_i^2 G_ii``, a parabola in ``d_i`` with minimum at

    d_i = (R G)_ii / G_ii          (0 where G_ii = 0: that input never fires)

a per-row least-squares problem in closed form (``best_diagonal``). Without data (G = I) it is
``d_i = R_ii``, today's data-free fit.

**Fitting to the original model's outputs** (``target="original"``). In sequential mode a
matrix receives ``X~``, the inputs the already compressed layers produce, not the original
model's ``X``. Fitting ``||(W - W') X~^T||`` reproduces W's response to the *damaged* inputs;
the original model computed ``W X^T``. The least-squares map from what the matrix now receives
to what it should output minimises ``||W X^T - W' X~^T||_F`` over all W': with
``C = X^T X~`` and ``G~ = X~^T X~``, the normal equations ``W' G~ = W C`` give

    W* = W C G~^-1 = W + W (C - G~) G~^-1     (W* = W when X~ = X)

and, as the residual ``W X^T - W* X~^T`` is orthogonal to the row space of ``X~^T``,
``||W X^T - W' X~^T||^2 = ||W X^T - W* X~^T||^2 + ||(W* - W') X~^T||^2`` for every W'. So
every fit above, applied to ``W*`` in the metric ``G~``, is also the optimum for the original
outputs (``original_target``): later layers undo part of what earlier ones lost, the
closed-form counterpart of GPTQ's error feedback.
"""

from __future__ import annotations

import torch
from torch import Tensor

RIDGE = 1e-8  # relative ridge for the Cholesky root: a tiny fraction of the mean input energy
TARGET_RIDGE = 1e-3  # relative ridge of original_target's solve: keeps W* from fitting noise
#                      in the calibration set's weakest input directions


def gram_root(G: Tensor) -> Tensor:
    """A square root S of the Gram matrix G (``S S^T = G``), float64.

    Cholesky of ``G + RIDGE * mean(diag G) * I`` (fast); when G is too singular for that,
    the eigen-decomposition root ``Q sqrt(max(Lambda, 0))``, exact for any PSD G.
    """
    G = G.double()
    ridge = RIDGE * G.diagonal().mean().clamp_min(1e-300)
    L, info = torch.linalg.cholesky_ex(
        G + ridge * torch.eye(len(G), dtype=G.dtype, device=G.device))
    if int(info) == 0:
        return L
    evals, vecs = torch.linalg.eigh(G)
    return vecs * evals.clamp_min(0).sqrt()


def _top_left(M: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Top-``rank`` eigenvectors (columns) and square-rooted eigenvalues of a PSD matrix."""
    evals, vecs = torch.linalg.eigh(M)  # ascending
    return vecs[:, -rank:].flip(-1), evals[-rank:].flip(-1).clamp_min(0).sqrt()


def _factors(U: Tensor, sigma: Tensor, weights: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """``A = U sigma^(1/2)``, ``B_k = sigma^(-1/2) U^T W_k``; zero where sigma is
    (numerically) 0."""
    tol = sigma.max().clamp_min(1e-300) * max(U.shape) * torch.finfo(torch.float64).eps
    root = sigma.sqrt()
    inv_root = torch.where(sigma > tol, 1 / root.clamp_min(1e-150), torch.zeros_like(root))
    A = U * torch.where(sigma > tol, root, torch.zeros_like(root))
    return A, [inv_root[:, None] * (U.T @ W) for W in weights]


def whitened_spectrum(weights: list[Tensor], grams: list[Tensor]) -> Tensor:
    """Squared singular values (descending) of ``[W_1 S_1 ... W_K S_K]``: what each extra rank
    of a (shared) whitened fit removes from the whitened error."""
    M = sum(W.double() @ G.double() @ W.double().T for W, G in zip(weights, grams))
    return torch.linalg.eigvalsh(M).flip(0).clamp_min(0)


def whitened_basis(weights: list[Tensor], grams: list[Tensor],
                   rank: int) -> tuple[Tensor, list[Tensor]]:
    """Basis Sharing with whitening: shared ``A`` (m x r) and ``B_k`` (r x n) per matrix, the
    optimum of ``sum_k ||(W_k - A B_k) S_k||_F^2`` (module docstring). One matrix: SVD-LLM."""
    Ws = [W.double() for W in weights]
    m, n = Ws[0].shape
    if len(Ws) == 1 and m > n:  # the n x n problem is cheaper: U_r = W S V_r / sigma_r
        S = gram_root(grams[0])
        WS = Ws[0] @ S
        V, sigma = _top_left(WS.T @ WS, rank)
        U = WS @ V / sigma.clamp_min(1e-150)
        U = torch.where(sigma > 0, U, torch.zeros_like(U))
    else:
        U, sigma = _top_left(sum(W @ G.double() @ W.T for W, G in zip(Ws, grams)), rank)
    A, Bs = _factors(U, sigma, Ws)
    return A.to(weights[0].dtype), [B.to(weights[0].dtype) for B in Bs]


def whitened_factors(weight: Tensor, gram: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """SVD-LLM's whitened truncated SVD of one matrix: ``A`` (m x r), ``B`` (r x n)."""
    A, (B,) = whitened_basis([weight], [gram], rank)
    return A, B


def best_diagonal(residual: Tensor, gram: Tensor) -> Tensor:
    """``d`` (min(m, n) entries) minimising ``tr((R - diag(d)) G (R - diag(d))^T)``:
    ``d_i = (R G)_ii / G_ii`` (module docstring)."""
    R, G = residual.double(), gram.double()
    k = min(R.shape)
    RG_diag = (R[:k] * G[:, :k].T).sum(1)  # (R G)_ii = sum_j R_ij G_ji, i < k
    g = G.diagonal()[:k]
    return torch.where(g > 0, RG_diag / g.clamp_min(1e-300), torch.zeros_like(g)).to(residual.dtype)


def whitened_error(error: Tensor, gram: Tensor, dtype=torch.float64) -> float:
    """``||E X^T||_F^2 = tr(E G E^T)``; ``dtype=torch.float32`` for a report (4x cheaper)."""
    E = error.to(dtype)
    return float(((E @ gram.to(dtype)) * E).sum())


def original_target(weight: Tensor, cross: Tensor, gram: Tensor,
                    ridge: float | None = None) -> Tensor:
    """``W* = W C G~^-1``, the matrix whose response to the compressed model's inputs best
    matches the original's outputs (module docstring), written ``W + W (C - G~) G~^-1`` with
    ``ridge * mean(diag G~)`` added to ``G~``: the ridge shrinks only the correction, so
    ``W* = W`` exactly when the inputs are undamaged (C = G~). ``cross`` is ``C = X^T X~``,
    ``gram`` is ``G~ = X~^T X~``."""
    G = gram.double()
    lam = (TARGET_RIDGE if ridge is None else ridge) * G.diagonal().mean().clamp_min(1e-300)
    G_ridge = G + lam * torch.eye(len(G), dtype=G.dtype, device=G.device)
    W = weight.double()
    # W (C - G) G^-1 = (G^-1 (C - G)^T W^T)^T, G symmetric
    correction = torch.linalg.solve(G_ridge, (cross.double() - G).T @ W.T).T
    return (W + correction).to(weight.dtype)
