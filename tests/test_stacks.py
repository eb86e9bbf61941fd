"""``stacks``: convert only the encoder or the decoder stack of an encoder-decoder model."""

import json

import pytest
import tiny_models as T
import torch
from torch import nn

import layershare
from layershare.cli import main
from layershare.errors import LayershareError
from layershare.residual import ResidualLinear
from layershare.surgery import stack_role


def _converted(model, path):
    return isinstance(model.get_submodule(path).fc1, ResidualLinear)


@pytest.mark.parametrize("stacks, enc, dec", [("all", True, True), ("encoder", True, False),
                                              ("decoder", False, True)])
def test_whisper_stacks(stacks, enc, dec, tmp_path):
    model = T.whisper().eval()
    x = T.inputs("whisper")
    with torch.no_grad():
        before = T.output(model, x)
    layershare.convert(model, method="residual", group_size=2, rank=32, stacks=stacks)
    assert _converted(model, "model.encoder.layers.0") is enc
    assert _converted(model, "model.decoder.layers.0") is dec
    counts = layershare.count(model)
    assert counts.layers == 4 * (enc + dec)
    with torch.no_grad():  # full rank: the same function
        torch.testing.assert_close(T.output(model, x), before, atol=1e-4, rtol=1e-4)
    layershare.save(model, tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "layershare.json").read_text())
    assert meta["config"]["stacks"] == stacks
    again = layershare.load(tmp_path / "c")
    assert _converted(again, "model.encoder.layers.0") is enc
    assert _converted(again, "model.decoder.layers.0") is dec
    assert layershare.count(again) == counts
    dense = layershare.merge(again)
    assert type(dense.model.encoder.layers[0].fc1) is nn.Linear
    assert type(dense.model.decoder.layers[0].fc1) is nn.Linear


def test_torch_transformer_encoder_only():
    model = T.torch_transformer()
    layershare.convert(model, method="lowrank", group_size=2, rank=4, stacks="encoder")
    assert [s.path for s in model.layershare_stacks_converted] == ["encoder.layers"]


def test_stacks_errors():
    with pytest.raises(LayershareError, match="unknown stacks 'middle'"):
        layershare.ShareConfig(method="residual", stacks="middle")
    with pytest.raises(LayershareError,
                       match="GPT2LMHeadModel has no decoder stack.*its stacks: transformer.h"):
        layershare.convert(T.gpt2(), method="residual", stacks="decoder")
    with pytest.raises(LayershareError, match="with stack= name the one stack"):
        layershare.ShareConfig(method="residual", stack="h", stacks="encoder")
    assert (stack_role("model.encoder.layers"), stack_role("model.decoder.layers"),
            stack_role("h")) == ("encoder", "decoder", None)


def test_cli_convert_stacks(tmp_path):
    src = tmp_path / "whisper"
    T.whisper().save_pretrained(src)
    assert main(["convert", str(src), "--method", "residual", "--stacks", "encoder",
                 "--rank", "4", "--out", str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "layershare.json").read_text())["config"]
    assert config["stacks"] == "encoder"
    assert main(["convert", str(src), "--method", "residual", "--stacks", "both",
                 "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
