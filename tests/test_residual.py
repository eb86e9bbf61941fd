"""ResidualLinear: exactness at full rank, shared gradients, the two forward paths and the
switch between them, the opt-in eval cache, scratch init."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layershare.residual import MERGE_CROSSOVER, ResidualLinear, set_cache_merged


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
        nn.init.normal_(layer.lora_A)
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
    assert all(layer.lora_B.grad is not None and layer.diag.grad is not None for layer in layers)


def test_opt_in_eval_cache_hits_and_is_invalidated_by_updates():
    layer = ResidualLinear(nn.Parameter(torch.randn(4, 4)), rank=2).eval()
    set_cache_merged(layer, True)  # the old behaviour, opt-in
    with torch.no_grad():
        first = layer.merged_weight()
        assert layer.merged_weight() is first  # cached
        layer.lora_A.add_(1.0)  # an optimizer step changes a version counter
        second = layer.merged_weight()
    assert second is not first
    torch.testing.assert_close(second, layer.shared + layer.lora_B @ layer.lora_A
                               + torch.diag(layer.diag))
    layer.train()
    with torch.no_grad():
        assert layer.merged_weight() is not layer.merged_weight()  # no cache in training
    layer.eval()
    assert layer.merged_weight().requires_grad  # grad enabled: fresh graph, never the cache


def test_merge_ignores_autocast_so_the_cache_serves_both_modes():
    layer = set_cache_merged(ResidualLinear(nn.Parameter(torch.randn(8, 8)), rank=2).eval())
    x = torch.randn(3, 8)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = layer(x)
        assert layer.merged_weight().dtype == torch.float32
        full = layer(x)  # fp32 after a bf16 forward: the cached weight still fits
    assert low.dtype == torch.bfloat16 and full.dtype == torch.float32
    with torch.no_grad():  # each is exactly the plain linear map in its precision
        weight = layer.merged_weight()
        torch.testing.assert_close(full, F.linear(x, weight), atol=0, rtol=0)
        torch.testing.assert_close(low, F.linear(x.bfloat16(), weight.bfloat16()), atol=0, rtol=0)


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
        assert layer.lora_B.numel() == 0


def _random_layer(m, n, rank, bias=True):
    layer = ResidualLinear(nn.Parameter(torch.randn(m, n)), rank,
                           bias=torch.randn(m) if bias else None).eval()
    with torch.no_grad():
        layer.lora_A.normal_()
        layer.diag.normal_()
    return layer


@pytest.mark.parametrize("shape", [(6, 6), (9, 5), (5, 9)])
def test_both_paths_equal_each_other_and_the_merged_weight(shape):
    layer = _random_layer(*shape, rank=3)
    x = torch.randn(2, 7, shape[1])
    with torch.no_grad():
        factored = layer._factored(x)
        merged = torch.nn.functional.linear(x, layer.merged_weight(), layer.bias)
        expected = (x @ (layer.shared + layer.lora_B @ layer.lora_A).T + layer.bias
                    + torch.nn.functional.pad(x[..., :min(shape)] * layer.diag,
                                              (0, max(0, shape[0] - shape[1]))))
    torch.testing.assert_close(factored, merged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)


def test_both_paths_equal_the_dense_layer_at_full_rank():
    dense = nn.Linear(7, 5)
    layer = ResidualLinear(nn.Parameter(torch.randn(5, 7)), rank=5, bias=dense.bias).fit(
        dense.weight.detach()).eval()
    x = torch.randn(4, 7)
    with torch.no_grad():
        ref = dense(x)
        torch.testing.assert_close(layer._factored(x), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.nn.functional.linear(x, layer.merged_weight(), layer.bias),
                                   ref, atol=1e-5, rtol=1e-5)


def test_path_switches_at_the_documented_crossover(monkeypatch):
    m, n = 40, 24
    layer = _random_layer(m, n, rank=2)
    crossover = math.ceil(MERGE_CROSSOVER * m * n / (m + n))
    calls = []
    monkeypatch.setattr(layer, "merged_weight", lambda: calls.append("merged")
                        or ResidualLinear.merged_weight(layer))
    with torch.no_grad():
        for tokens, path in ((1, []), (crossover - 1, []), (crossover, ["merged"])):
            calls.clear()
            layer(torch.randn(1, tokens, n))  # tokens counted over batch x sequence
            assert calls == path, tokens
            assert layer.uses_merged(tokens) == bool(path)
        calls.clear()
        layer(torch.randn(crossover, 1, n))
        assert calls == ["merged"]


def test_decoding_holds_no_dense_weight_and_the_cache_brings_it_back():
    layer = _random_layer(8, 8, rank=2)
    with torch.no_grad():
        layer(torch.randn(1, 8))
        layer(torch.randn(64, 8))  # the merged path: transient
    assert layer._cache is None
    set_cache_merged(layer, True)
    with torch.no_grad():
        out = layer(torch.randn(1, 8))
    assert layer._cache is not None and layer._cache[1].shape == (8, 8)
    assert layer.uses_merged(1)
    set_cache_merged(layer, False)
    assert layer._cache is None and out.shape == (1, 8)


def test_training_runs_the_merged_path_and_gradients_reach_every_part():
    layer = _random_layer(6, 4, rank=2).train()
    assert layer.uses_merged(1)  # grad needed: always merged, whatever T
    x = torch.randn(1, 4)
    layer(x).pow(2).sum().backward()
    for p in (layer.shared, layer.lora_B, layer.lora_A, layer.diag, layer.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0
    with torch.no_grad():
        assert not layer.uses_merged(1)  # no grad needed: T decides, even in training mode


def test_merges_are_functional():
    """No in-place op in the merge (torch.onnx.export refuses them): every aten op it runs
    is recorded below."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from layershare.lowrank import LowRankLinear

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    low = LowRankLinear(nn.Parameter(torch.randn(5, 2)), torch.randn(2, 5), diag=torch.randn(5))
    for module in (_random_layer(5, 5, rank=2), low):
        with Ops() as ops:
            module.merged_weight()
        assert ops.names and not [n for n in ops.names if n.endswith("_")], ops.names
