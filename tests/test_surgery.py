"""convert on every supported architecture: exactness, sharing semantics, generation."""

import pytest
import tiny_models as T
import torch
from torch import nn

import layershare
from layershare import LayershareError
from layershare.lowrank import LowRankLinear
from layershare.residual import ResidualLinear

ARCHS = list(T.BUILDERS)
HF_GENERATIVE = ["gpt2", "llama", "whisper"]


def _run(model, name):
    with torch.no_grad():
        return T.output(model.eval(), T.inputs(name))


@pytest.mark.parametrize("name", ARCHS)
def test_full_rank_residual_reproduces_dense_outputs(name):
    model = T.BUILDERS[name]()
    ref = _run(model, name)
    layershare.convert(model, method="residual", group_size=2, rank=10_000)  # capped: full rank
    assert any(isinstance(m, ResidualLinear) for m in model.modules())
    torch.testing.assert_close(_run(model, name), ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ARCHS)
def test_full_rank_lowrank_without_sharing_reproduces_dense_outputs(name):
    model = T.BUILDERS[name]()
    ref = _run(model, name)
    layershare.convert(model, method="lowrank", group_size=1, rank=10_000)
    assert any(isinstance(m, LowRankLinear) for m in model.modules())
    torch.testing.assert_close(_run(model, name), ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("init", ["mean", "first", "stepwise"])
def test_residual_shared_weight_follows_init(init):
    model = T.llama()
    dense = [layer.mlp.down_proj.weight.detach().clone() for layer in model.model.layers]
    layershare.convert(model, method="residual", group_size=2, rank=2, strategy="cycle", init=init)
    layers = model.model.layers
    assert layers[0].mlp.down_proj.shared is layers[2].mlp.down_proj.shared  # cycle: 0,1,0,1
    expected = {"mean": (dense[0] + dense[2]) / 2, "first": dense[0],
                "stepwise": dense[0]}[init]  # group 0 of 2 over 4 layers: layer 0
    torch.testing.assert_close(layers[0].mlp.down_proj.shared.detach(), expected)
    if init == "stepwise":  # group 1 takes layer floor(1 * 4 / 2) = 2, outside the group
        torch.testing.assert_close(layers[1].mlp.down_proj.shared.detach(), dense[2])


def test_scratch_init_makes_every_group_member_equal():
    model = T.gpt2()
    layershare.convert(model, method="residual", group_size=2, rank=4, init="scratch")
    h = model.transformer.h
    for a, b in ((0, 1), (2, 3)):
        torch.testing.assert_close(h[a].mlp.c_fc.merged_weight(), h[b].mlp.c_fc.merged_weight())
    assert not torch.equal(h[0].mlp.c_fc.merged_weight(), h[2].mlp.c_fc.merged_weight())


def test_tied_layers_hold_the_same_tensors_and_gradients_accumulate():
    model = T.gpt2()
    layershare.convert(model, method="tied", group_size=2, init="first")
    h = model.transformer.h
    assert h[1].attn.c_attn.weight is h[0].attn.c_attn.weight
    assert h[1].ln_1.weight is h[0].ln_1.weight  # ALBERT-style: norms too
    assert h[2].attn.c_attn.weight is not h[0].attn.c_attn.weight
    assert h[1].attn.c_attn.weight.data_ptr() == h[0].attn.c_attn.weight.data_ptr()
    ids = T.inputs("gpt2")["input_ids"]
    model(input_ids=ids, labels=ids).loss.backward()
    assert h[0].attn.c_attn.weight.grad is h[1].attn.c_attn.weight.grad


def test_tie_other_false_keeps_norms_per_layer():
    model = T.bert()
    layershare.convert(model, method="tied", group_size=4, tie_other=False)
    layers = model.encoder.layer
    assert layers[3].attention.self.query.weight is layers[0].attention.self.query.weight
    assert layers[3].output.LayerNorm.weight is not layers[0].output.LayerNorm.weight


def test_matrix_selection_converts_only_the_chosen_kinds():
    model = T.llama()
    layershare.convert(model, method="residual", rank=2, matrices=["q", "v", "ffn_out"])
    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    assert isinstance(attn.q_proj, ResidualLinear) and isinstance(attn.v_proj, ResidualLinear)
    assert isinstance(attn.k_proj, nn.Linear) and isinstance(mlp.up_proj, nn.Linear)
    assert isinstance(mlp.down_proj, ResidualLinear)


def test_fused_qkv_needs_all_three_kinds():
    with pytest.raises(LayershareError, match="fused"):
        layershare.convert(T.gpt2(), method="residual", matrices=["q", "o"])


def test_explicit_stack_for_an_unknown_architecture():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.out = nn.Linear(8, 16), nn.Linear(16, 8)

        def forward(self, x):
            return x + self.out(torch.relu(self.inp(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Block() for _ in range(4))

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x

    with pytest.raises(LayershareError, match="stack="):
        layershare.convert(Net(), method="tied")
    model, x = Net(), torch.randn(3, 8)
    ref = model(x)
    layershare.convert(model, method="residual", rank=100, stack="blocks")
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)
    assert isinstance(model.blocks[2].inp, ResidualLinear)
    model2 = Net()
    layershare.convert(model2, method="lowrank", rank=2, stack="blocks", linears={"inp": "ffn_in"})
    assert isinstance(model2.blocks[0].inp, LowRankLinear)
    assert isinstance(model2.blocks[0].out, nn.Linear)


def test_converting_twice_is_an_error():
    model = layershare.convert(T.gpt2(), method="tied")
    with pytest.raises(LayershareError, match="converted already"):
        layershare.convert(model, method="tied")


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="magic"), "unknown method"),
    (dict(method="lowrank", rank=0), "rank must be an integer >= 1"),
    (dict(method="residual", rank=-1), "rank must be an integer >= 0"),
    (dict(method="residual", group_size=5), "larger than the stack"),
    (dict(method="residual", init="median"), "unknown init"),
    (dict(method="residual", matrices=["qq"]), "unknown matrices"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(LayershareError, match=message):
        layershare.convert(T.llama(), **kwargs)


@pytest.mark.parametrize("name", HF_GENERATIVE)
@pytest.mark.parametrize("method", ["residual", "lowrank", "tied"])
def test_converted_model_generates_with_kv_cache(name, method):
    model = T.BUILDERS[name]().eval()
    layershare.convert(model, method=method, group_size=2, rank=4, strategy="cycle")
    kw = T.inputs(name, batch=1, length=5)
    prompt = {"input_features": kw["input_features"]} if name == "whisper" else kw
    gen = dict(max_new_tokens=6, do_sample=False, min_new_tokens=6)
    with torch.no_grad():
        cached = model.generate(**prompt, **gen, use_cache=True)
        uncached = model.generate(**prompt, **gen, use_cache=False)
    assert cached.shape[1] >= 6
    torch.testing.assert_close(cached, uncached)


def test_lowrank_from_scratch_is_random_with_dense_scale():
    model = T.llama()
    dense_std = model.model.layers[0].mlp.up_proj.weight.std().item()
    layershare.convert(model, method="lowrank", group_size=2, rank=8, init="scratch")
    merged = model.model.layers[0].mlp.up_proj.merged_weight()
    assert 0.5 < merged.std().item() / dense_std < 2.0


def test_lowrank_transfer_error_per_matrix_is_eckart_young_optimum():
    model = T.llama()
    dense = {n: m.weight.detach().clone() for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and ".layers." in n}
    layershare.convert(model, method="lowrank", group_size=1, rank=5)
    converted = dict(model.named_modules())
    assert len(dense) == 4 * 7
    for name, weight in dense.items():
        s = torch.linalg.svdvals(weight.double())
        err = (weight - converted[name].merged_weight()).double().pow(2).sum()
        torch.testing.assert_close(err, s[5:].pow(2).sum(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["residual", "lowrank"])
@pytest.mark.parametrize("name", ["gpt2", "llama", "torch_encoder"])
def test_converted_modules_keep_the_training_mode_of_the_model(name, method):
    for training in (False, True):
        model = T.BUILDERS[name]().train(training)
        layershare.convert(model, method=method, group_size=2, rank=2)
        modes = {m.training for m in model.modules()}
        assert modes == {training}, (training, modes)
