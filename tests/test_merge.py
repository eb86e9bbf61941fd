"""merge: back to a plain dense model of the original class, same outputs."""

import pytest
import tiny_models as T
import torch
import transformers
from torch import nn

import layershare
from layershare.errors import LayershareError
from layershare.lowrank import LowRankLinear
from layershare.residual import ResidualLinear


def _out(model, name):
    with torch.no_grad():
        return T.output(model.eval(), T.inputs(name))


@pytest.mark.parametrize("name", list(T.BUILDERS))
@pytest.mark.parametrize("method", ["residual", "lowrank", "tied"])
def test_merge_gives_same_outputs_and_plain_modules(name, method):
    model = layershare.convert(T.BUILDERS[name](), method=method, group_size=2, rank=3)
    dense = layershare.merge(model, inplace=False)
    assert type(dense) is type(model) and dense is not model
    assert not any(isinstance(m, (ResidualLinear, LowRankLinear)) for m in dense.modules())
    assert not hasattr(dense, "layershare_config")
    torch.testing.assert_close(_out(dense, name), _out(model, name), atol=1e-5, rtol=1e-5)
    reference = T.BUILDERS[name]()
    assert (sum(p.numel() for p in dense.parameters())
            == sum(p.numel() for p in reference.parameters()))
    assert ([n for n, _ in dense.named_parameters()]
            == [n for n, _ in reference.named_parameters()]
            or name.startswith("torch"))  # torch's MHA re-registers in_proj_weight last


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
    copy = layershare.merge(model, inplace=False)
    assert copy is not model and isinstance(copy.transformer.h[0].attn.c_attn, nn.Module)


def test_convert_refuses_overrides_that_conflict_with_config():
    config = layershare.ShareConfig(method="residual", group_size=2, rank=3)
    with pytest.raises(LayershareError, match="rank=8 conflicts with config.rank=3"):
        layershare.convert(T.gpt2(), config=config, rank=8)
    with pytest.raises(LayershareError, match="method='lowrank' conflicts"):
        layershare.convert(T.gpt2(), "lowrank", config=config)
    with pytest.raises(LayershareError, match="unknown option"):
        layershare.convert(T.gpt2(), config=config, ranq=3)
    same = layershare.convert(T.gpt2(), config=config, rank=3)  # agreeing is fine
    assert same.layershare_config.rank == 3


def test_convert_and_merge_follow_one_rule_in_place_unless_asked():
    x = torch.randint(0, 50, (1, 6))
    model = T.gpt2().eval()
    before = model(input_ids=x).logits
    copy = layershare.convert(model, method="residual", group_size=2, rank=2, inplace=False)
    assert copy is not model and not hasattr(model, "layershare_config")
    torch.testing.assert_close(model(input_ids=x).logits, before)  # the original untouched
    same = layershare.convert(model, method="residual", group_size=2, rank=2)
    assert same is model and model.layershare_config.rank == 2
    dense = layershare.merge(model, inplace=False)
    assert dense is not model and hasattr(model, "layershare_config")
    assert layershare.merge(model) is model and not hasattr(model, "layershare_config")


def test_save_pretrained_of_a_converted_model_names_layershare_save(tmp_path):
    model = layershare.convert(T.gpt2(), method="residual", group_size=2, rank=2)
    with pytest.raises(LayershareError, match=r"layershare.save\(model, DIR\)"):
        model.save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()
    layershare.merge(model).save_pretrained(tmp_path / "dense")  # merged: allowed again
    assert (tmp_path / "dense" / "config.json").is_file()
