"""formats.gate.what_is: the one answer to "what is this path?" for every verb."""

import pytest
import tiny_models as T
import torch

import layershare
from layershare.errors import LayershareError
from layershare.formats.gate import what_is


def test_every_kind_is_named(tmp_path):
    model = layershare.convert(T.gpt2(), method="residual", group_size=2, rank=2)
    ckpt = layershare.save(model, tmp_path / "ckpt")
    assert what_is(ckpt).kind == "layershare" and what_is(ckpt).model == ckpt
    dense = tmp_path / "dense"
    T.gpt2().save_pretrained(dense)
    assert what_is(dense).kind == "transformers"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: {name: brown}\n")
    layershare.save(model, run / "model")
    found = what_is(run)
    assert (found.kind, found.model) == ("run", run / "model")
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    assert what_is(gguf).kind == "gguf"
    export = tmp_path / "export"
    export.mkdir()
    (export / "onnx.json").write_text("{}")
    (export / "model.onnx").write_bytes(b"\0")
    assert what_is(export).kind == "onnx"
    with pytest.raises(LayershareError, match="no such file"):
        what_is(tmp_path / "nothing")
    with pytest.raises(LayershareError, match="unknown model|not installed|smollm"):
        what_is("smollm2-135m-nope")
    assert torch.is_tensor(next(iter(layershare.load(found.model).state_dict().values())))
