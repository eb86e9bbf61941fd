"""ResidualLinear: exactness at full rank, shared gradients, eval cache, scratch init."""

import torch
from torch import nn

from layershare.residual import ResidualLinear


def _layers(weights, rank, diag=True):
    shared = nn.Parameter(torch.stack(weights).mean(0))
    return [ResidualLinear(shared, rank, diag=diag).fit(w) for w in weights]


def test_full_rank_fit_reproduces_each_weight():
    weights = [torch.randn(12, 7) for _ in range(3)]
    for layer, w in zip(_layers(weights, rank=7), weights):
        torch.testing.assert_close(layer.merged_weight(), w, atol=1e-5, rtol=0)


def test_low_rank_fit_error_is_within_eckart_young_of_the_residual():
    weights = [torch.randn(16, 16) for _ in range(2)]
    layers = _layers(weights, rank=4, diag=False)
    for layer, w in zip(layers, weights):
        s = torch.linalg.svdvals((w - layer.shared).double())
        err = (layer.merged_weight() - w).double().pow(2).sum()
        torch.testing.assert_close(err, s[4:].pow(2).sum(), rtol=1e-4, atol=1e-5)
    # the diagonal only ever lowers the error: it is fit to what the low rank leaves
    with_diag = _layers(weights, rank=4, diag=True)
    for a, b, w in zip(layers, with_diag, weights):
        assert (b.merged_weight() - w).norm() < (a.merged_weight() - w).norm()


def test_non_square_diagonal_lands_on_leading_diagonal():
    layer = ResidualLinear(nn.Parameter(torch.zeros(5, 3)), rank=1)
    with torch.no_grad():
        layer.diag.copy_(torch.tensor([1.0, 2.0, 3.0]))
    expected = torch.zeros(5, 3)
    expected[[0, 1, 2], [0, 1, 2]] = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(layer.merged_weight(), expected)


def test_from_scratch_layer_starts_equal_to_shared():
    shared = nn.Parameter(torch.randn(8, 6))
    layer = ResidualLinear(shared, rank=3)
    torch.testing.assert_close(layer.merged_weight(), shared.detach())
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), x @ shared.detach().T)


def test_gradient_of_shared_weight_is_sum_over_its_layers():
    shared = nn.Parameter(torch.randn(6, 6))
    layers = [ResidualLinear(shared, rank=2) for _ in range(3)]
    for layer in layers:
        nn.init.normal_(layer.lora_b)
    x = torch.randn(5, 6)
    h = x
    merged = []
    for layer in layers:
        w = layer.merged_weight()
        w.retain_grad()
        merged.append(w)
        h = torch.tanh(torch.nn.functional.linear(h, w))
    h.sum().backward()
    torch.testing.assert_close(shared.grad, sum(w.grad for w in merged))
    assert all(layer.lora_a.grad is not None and layer.diag.grad is not None for layer in layers)


def test_eval_cache_hits_and_is_invalidated_by_updates():
    layer = ResidualLinear(nn.Parameter(torch.randn(4, 4)), rank=2).eval()
    with torch.no_grad():
        first = layer.merged_weight()
        assert layer.merged_weight() is first  # cached
        layer.lora_b.add_(1.0)  # an optimizer step changes a version counter
        second = layer.merged_weight()
    assert second is not first
    torch.testing.assert_close(second, layer.shared + layer.lora_a @ layer.lora_b
                               + torch.diag(layer.diag))
    layer.train()
    with torch.no_grad():
        assert layer.merged_weight() is not layer.merged_weight()  # no cache in training
    layer.eval()
    assert layer.merged_weight().requires_grad  # grad enabled: fresh graph, never the cache


def test_merge_ignores_autocast_so_the_cache_serves_both_modes():
    layer = ResidualLinear(nn.Parameter(torch.randn(8, 8)), rank=2).eval()
    x = torch.randn(3, 8)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = layer(x)
        assert layer.merged_weight().dtype == torch.float32
        full = layer(x)  # fp32 after a bf16 forward: the cached weight still fits
    assert low.dtype == torch.bfloat16 and full.dtype == torch.float32
    torch.testing.assert_close(low.float(), full, atol=0.1, rtol=0.05)


def test_compiles_without_graph_breaks_in_eval_and_train():
    layer = ResidualLinear(nn.Parameter(torch.randn(8, 8)), rank=2)
    x = torch.randn(3, 8)
    for mode in (layer.train, layer.eval):
        mode()
        with torch.no_grad():
            explanation = torch._dynamo.explain(layer)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons


def test_rank_zero_is_shared_plus_diagonal():
    weights = [torch.randn(6, 6) for _ in range(2)]
    shared = nn.Parameter(torch.stack(weights).mean(0))
    layers = [ResidualLinear(shared, rank=0).fit(w) for w in weights]
    for layer, w in zip(layers, weights):
        expected = shared.detach() + torch.diag(torch.diagonal(w - shared.detach()))
        torch.testing.assert_close(layer.merged_weight(), expected)
        assert layer.lora_a.numel() == 0
