"""LowRankLinear and SVD weight transfer: Eckart-Young optimum, basis sharing, diagonal."""

import torch
from torch import nn

from layershare.lowrank import LowRankLinear
from layershare.svd import shared_basis, truncated_svd


def test_truncated_svd_error_is_eckart_young_optimum():
    w = torch.randn(20, 12)
    s = torch.linalg.svdvals(w.double())
    for rank in (1, 5, 11):
        a, b = truncated_svd(w, rank)
        assert a.shape == (20, rank) and b.shape == (rank, 12)
        err = (w - a @ b).double().pow(2).sum()
        torch.testing.assert_close(err, s[rank:].pow(2).sum(), rtol=1e-4, atol=1e-6)
    a, b = truncated_svd(w, 12)
    torch.testing.assert_close(a @ b, w, atol=1e-5, rtol=0)
    # the singular values are split evenly: both factors have the same norm
    torch.testing.assert_close(a.norm(), b.norm(), rtol=1e-4, atol=0)


def test_shared_basis_is_optimal_for_the_concatenated_group():
    ws = [torch.randn(10, 6) for _ in range(3)]
    basis, coeffs = shared_basis(ws, rank=4)
    s = torch.linalg.svdvals(torch.cat(ws, 1).double())
    err = sum((w - basis @ c).double().pow(2).sum() for w, c in zip(ws, coeffs))
    torch.testing.assert_close(err, s[4:].pow(2).sum(), rtol=1e-4, atol=1e-6)


def test_forward_matches_merged_weight_square_and_not():
    for out_f, in_f in ((6, 6), (9, 4), (4, 9)):
        basis = nn.Parameter(torch.randn(out_f, 3))
        layer = LowRankLinear(basis, torch.randn(3, in_f), bias=torch.randn(out_f),
                              diag=torch.randn(min(out_f, in_f)))
        x = torch.randn(2, 5, in_f)
        torch.testing.assert_close(layer(x), x @ layer.merged_weight().T + layer.bias,
                                   atol=1e-5, rtol=1e-5)


def test_shared_basis_gradient_is_sum_over_layers():
    basis = nn.Parameter(torch.randn(5, 2))
    layers = [LowRankLinear(basis, torch.randn(2, 5)) for _ in range(2)]
    x = torch.randn(3, 5)
    grads = []
    for layer in layers:
        basis.grad = None
        layer(x).pow(2).sum().backward()
        grads.append(basis.grad.clone())
    basis.grad = None
    sum(layer(x).pow(2).sum() for layer in layers).backward()
    torch.testing.assert_close(basis.grad, grads[0] + grads[1])
    assert not torch.allclose(grads[0], grads[1])
