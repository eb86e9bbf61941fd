"""Rank-deficient fits: zero singular values get zero factors, never NaN.

With ``init=first`` the first layer of every group IS the shared weight, so its residual
``W_0 - S`` is exactly zero: every singular value is zero. A low-rank matrix fitted at a
larger rank has zero singular values too."""

import pytest
import tiny_models as T
import torch

import layershare
from layershare.svd import truncated_svd


@pytest.mark.parametrize("shape", [(6, 10), (10, 6)])  # both branches (wide, tall)
def test_zero_matrix_gives_zero_factors(shape):
    A, B = truncated_svd(torch.zeros(shape), 4)
    assert torch.isfinite(A).all() and torch.isfinite(B).all()
    assert torch.count_nonzero(A @ B) == 0


@pytest.mark.parametrize("shape", [(6, 10), (10, 6)])
def test_rank_deficient_matrix_is_reproduced(shape):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(shape[0], 2, generator=g) @ torch.randn(2, shape[1], generator=g)  # rank 2
    A, B = truncated_svd(W, 5)
    assert torch.isfinite(A).all() and torch.isfinite(B).all()
    torch.testing.assert_close(A @ B, W, atol=1e-5, rtol=1e-5)


def test_residual_init_first_is_finite_and_exact_at_full_rank():
    model = T.gpt2().eval()
    ids = T.inputs("gpt2")["input_ids"]
    with torch.no_grad():
        want = model(ids).logits
        layershare.convert(model, method="residual", group_size=2, rank=32, init="first",
                           diag=False)
        got = model(ids).logits
    assert all(torch.isfinite(p).all() for p in model.parameters())
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
