"""merge: back to a plain dense model of the original class, same outputs."""

import pytest
import torch
import transformers
from torch import nn

import layershare
from layershare.lowrank import LowRankLinear
from layershare.residual import ResidualLinear

import tiny_models as T


def _out(model, name):
    with torch.no_grad():
        return T.output(model.eval(), T.inputs(name))


@pytest.mark.parametrize("name", list(T.BUILDERS))
@pytest.mark.parametrize("method", ["residual", "lowrank", "tied"])
def test_merge_gives_same_outputs_and_plain_modules(name, method):
    model = layershare.convert(T.BUILDERS[name](), method=method, group_size=2, rank=3)
    dense = layershare.merge(model)
    assert type(dense) is type(model) and dense is not model
    assert not any(isinstance(m, (ResidualLinear, LowRankLinear)) for m in dense.modules())
    assert not hasattr(dense, "layershare_config")
    torch.testing.assert_close(_out(dense, name), _out(model, name), atol=1e-5, rtol=1e-5)
    reference = T.BUILDERS[name]()
    assert sum(p.numel() for p in dense.parameters()) == sum(p.numel() for p in reference.parameters())
    assert [n for n, _ in dense.named_parameters()] == [n for n, _ in reference.named_parameters()] \
        or name.startswith("torch")  # torch's MHA re-registers in_proj_weight last


def test_merged_layers_are_independent_after_tying():
    dense = layershare.merge(layershare.convert(T.gpt2(), method="tied", group_size=4))
    h = dense.transformer.h
    assert h[1].attn.c_attn.weight is not h[0].attn.c_attn.weight
    torch.testing.assert_close(h[1].attn.c_attn.weight, h[0].attn.c_attn.weight)
    assert dense.lm_head.weight is dense.transformer.wte.weight  # transformers' own tie stays


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert", "whisper"])
def test_merged_transformers_model_reloads_with_transformers_alone(tmp_path, name):
    model = layershare.convert(T.BUILDERS[name](), method="residual", group_size=2, rank=3)
    layershare.merge(model).save_pretrained(tmp_path)
    cls = getattr(transformers, type(model).__name__)
    reloaded = cls.from_pretrained(tmp_path)
    torch.testing.assert_close(_out(reloaded, name), _out(model, name), atol=1e-5, rtol=1e-5)


def test_merge_of_a_dense_model_is_a_copy():
    model = T.gpt2()
    copy = layershare.merge(model)
    assert copy is not model and isinstance(copy.transformer.h[0].attn.c_attn, nn.Module)
