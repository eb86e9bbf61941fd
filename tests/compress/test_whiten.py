"""The calibrated fits: optimal in the data metric (Eckart-Young, whitened), exact at full rank,
the diagonal's closed form against brute-force least squares."""

import pytest
import torch

from layershare.compress.whiten import (
    best_diagonal,
    gram_root,
    original_target,
    whitened_basis,
    whitened_error,
    whitened_factors,
    whitened_spectrum,
)
from layershare.svd import shared_basis, truncated_svd


def _data(n, tokens=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-2, 1, n, dtype=torch.float64)  # anisotropic inputs: whitening matters
    X = torch.randn(tokens, n, generator=g, dtype=torch.float64) * scales
    return X, X.T @ X


def _dropped(W, G, rank):
    S = torch.linalg.cholesky(G)
    sigma = torch.linalg.svdvals(W @ S)
    return float((sigma[rank:] ** 2).sum())


@pytest.mark.parametrize("m, n", [(12, 20), (20, 12), (16, 16)])
@pytest.mark.parametrize("rank", [1, 5])
def test_whitened_svd_error_is_the_dropped_whitened_spectrum(m, n, rank):
    W = torch.randn(m, n, dtype=torch.float64)
    X, G = _data(n)
    A, B = whitened_factors(W, G, rank)
    assert A.shape == (m, rank) and B.shape == (rank, n)
    error = whitened_error(W - A @ B, G)
    assert error == pytest.approx(_dropped(W, G, rank), rel=1e-8)
    assert error == pytest.approx(float(((W - A @ B) @ X.T).norm() ** 2), rel=1e-8)
    # never worse than the unwhitened SVD, and clearly better on anisotropic inputs
    a, b = truncated_svd(W, rank)
    assert error < whitened_error(W - a @ b, G)
    # and no nearby rank-r matrix does better
    for _ in range(5):
        A2, B2 = A + 1e-3 * torch.randn_like(A), B + 1e-3 * torch.randn_like(B)
        assert whitened_error(W - A2 @ B2, G) >= error


@pytest.mark.parametrize("m, n", [(12, 20), (20, 12)])
def test_full_rank_reproduces_the_weight(m, n):
    W = torch.randn(m, n, dtype=torch.float64)
    _, G = _data(n)
    A, B = whitened_factors(W, G, min(m, n))
    torch.testing.assert_close(A @ B, W, atol=1e-9, rtol=1e-9)


def test_singular_gram_falls_back_and_stays_optimal():
    n, m, rank = 16, 10, 3
    X, _ = _data(n, tokens=6)            # 6 tokens: G has rank 6 < 16
    G = X.T @ X
    S = gram_root(G)
    torch.testing.assert_close(S @ S.T, G, atol=1e-8 * float(G.abs().max()), rtol=0)
    W = torch.randn(m, n, dtype=torch.float64)
    A, B = whitened_factors(W, G, rank)
    sigma = torch.linalg.svdvals(W @ X.T)  # ||E X^T|| directly: no root needed for the check
    assert whitened_error(W - A @ B, G) == pytest.approx(float((sigma[rank:] ** 2).sum()), rel=1e-6)
    assert torch.isfinite(A).all() and torch.isfinite(B).all()


def test_rank_deficient_weight_gives_finite_zero_factors():
    W = torch.zeros(8, 12, dtype=torch.float64)
    W[:, :2] = torch.randn(8, 2, dtype=torch.float64)  # rank 2, asked for 5
    _, G = _data(12)
    A, B = whitened_factors(W, G, 5)
    assert torch.isfinite(A).all() and torch.isfinite(B).all()
    torch.testing.assert_close(A @ B, W, atol=1e-9, rtol=0)


def test_whitened_basis_sharing_is_optimal_for_the_group():
    m, n, rank = 14, 10, 4
    Ws = [torch.randn(m, n, dtype=torch.float64) for _ in range(3)]
    Gs = [_data(n, seed=s)[1] for s in range(3)]
    A, Bs = whitened_basis(Ws, Gs, rank)
    total = sum(whitened_error(W - A @ B, G) for W, B, G in zip(Ws, Bs, Gs))
    assert total == pytest.approx(float(whitened_spectrum(Ws, Gs)[rank:].sum()), rel=1e-8)
    a, bs = shared_basis(Ws, rank)  # the unwhitened shared basis, measured in the data metric
    assert total < sum(whitened_error(W - a @ b, G) for W, b, G in zip(Ws, bs, Gs))
    A_full, Bs_full = whitened_basis(Ws, Gs, m)
    for W, B in zip(Ws, Bs_full):
        torch.testing.assert_close(A_full @ B, W, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("m, n", [(9, 13), (13, 9), (10, 10)])
def test_diagonal_closed_form_matches_brute_force_least_squares(m, n):
    R = torch.randn(m, n, dtype=torch.float64)
    _, G = _data(n)
    S = torch.linalg.cholesky(G)
    k = min(m, n)
    # brute force: d minimises ||vec(R S) - sum_i d_i vec(E_ii S)||, all entries jointly
    columns = []
    for i in range(k):
        E = torch.zeros(m, n, dtype=torch.float64)
        E[i, i] = 1
        columns.append((E @ S).reshape(-1))
    d_lstsq = torch.linalg.lstsq(torch.stack(columns, 1), (R @ S).reshape(-1, 1)).solution[:, 0]
    d = best_diagonal(R, G)
    torch.testing.assert_close(d, d_lstsq, atol=1e-8, rtol=1e-8)
    D = torch.zeros(m, n, dtype=torch.float64)
    D[range(k), range(k)] = d
    assert whitened_error(R - D, G) <= whitened_error(R, G)
    # without data (G = I) the closed form is the data-free fit: the diagonal of R
    torch.testing.assert_close(best_diagonal(R, torch.eye(n, dtype=torch.float64)), R.diagonal())


def test_original_target_is_the_least_squares_map_to_the_original_outputs():
    m, n = 10, 14
    W = torch.randn(m, n, dtype=torch.float64)
    X, _ = _data(n, seed=1)
    X_c = X + 0.1 * torch.randn(X.shape, generator=torch.Generator().manual_seed(2),
                                dtype=torch.float64)  # the inputs after upstream damage
    G_c, C = X_c.T @ X_c, X.T @ X_c
    target = original_target(W, C, G_c, ridge=0.0)
    # min_W' ||W X^T - W' X_c^T||: least squares of X_c W'^T = X W^T
    expected = torch.linalg.lstsq(X_c, X @ W.T).solution.T
    torch.testing.assert_close(target, expected, atol=1e-8, rtol=1e-8)
    # Pythagoras: for any W', the original-output error splits into W*'s and the metric-G_c one
    other = torch.randn(m, n, dtype=torch.float64)
    total = ((X @ W.T - X_c @ other.T) ** 2).sum()
    split = ((X @ W.T - X_c @ target.T) ** 2).sum() + whitened_error(target - other, G_c)
    torch.testing.assert_close(total, torch.as_tensor(float(split), dtype=torch.float64))
    # undamaged inputs: W* = W exactly, whatever the ridge
    torch.testing.assert_close(original_target(W, X.T @ X, X.T @ X), W, atol=1e-12, rtol=0)
