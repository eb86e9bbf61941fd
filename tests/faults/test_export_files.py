"""A damaged ONNX export (deploy/export_files.py): each malformed side file, a truncated
graph or weights file, an external-data location outside the directory and an ONNX Runtime
failure is one line and exit 2 from ``layershare generate EXPORT``."""

from __future__ import annotations

import json
import shutil

import pytest
from fault_helpers import assert_one_line, snapshot


def _mutate_graph(directory, change):
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(directory / "model.onnx"), load_external_data=False)
    tensor = next(t for t in _get_all_tensors(model) if uses_external_data(t))
    for entry in tensor.external_data:
        change(entry)
    onnx.save_model(model, str(directory / "model.onnx"))


def _set(key, value):
    def change(entry):
        if entry.key == key:
            entry.value = value
    return change


VARIANTS = {  # name -> (how to damage the export, words of the one line)
    "meta-list": (lambda d: (d / "onnx.json").write_text("[]"), "expected a JSON object"),
    "meta-not-json": (lambda d: (d / "onnx.json").write_text("{oops"), "cannot be read"),
    "past-shapes-string": (lambda d: _meta(d, past_shapes="x"), "past_shapes must be"),
    "past-shapes-zero": (lambda d: _meta(d, past_shapes=[[0, 8]] * 4), "past_shapes must be"),
    "inputs-missing": (lambda d: _meta(d, inputs=["attention_mask"]), "inputs lack"),
    "inputs-renamed": (lambda d: _meta(d, rename=True), "inputs the graph does not have"),
    "cache-count": (lambda d: _meta(d, past_shapes=[[2, 8]] * 3), "cache inputs for 3 layers"),
    "ort-run-fails": (lambda d: _meta(d, past_shapes=[[3, 8]] * 4), "ONNX Runtime failed"),
    "graph-truncated": (lambda d: _cut(d / "model.onnx", 100), "model.onnx"),
    "data-truncated": (lambda d: _cut(d / "model.onnx.data", 100), "declares bytes"),
    "data-outside": (lambda d: _mutate_graph(d, _set("location", "../outside.data")),
                     "outside the directory"),
    "data-absolute": (lambda d: _mutate_graph(d, _set("location", "/dev/urandom")),
                      "absolute path"),
    "data-offset": (lambda d: _mutate_graph(d, _set("offset", "99999999999")), "declares bytes"),
    "tokenizer-garbage": (lambda d: (d / "tokenizer.json").write_text("{}"), "tokenizer.json"),
}


def _meta(directory, rename=False, **changes):
    meta = json.loads((directory / "onnx.json").read_text())
    meta.update(changes)
    if rename:  # still a key and a value per layer, not the graph's names
        meta["inputs"] = [n.replace(".key", ".k") for n in meta["inputs"]]
    (directory / "onnx.json").write_text(json.dumps(meta))


def _cut(path, n):
    path.write_bytes(path.read_bytes()[:n])


@pytest.mark.parametrize("variant", VARIANTS)
def test_damaged_export_is_one_line(variant, onnx_exports, tmp_path, cli):
    export = tmp_path / "export"
    shutil.copytree(onnx_exports("llama-residual")[2], export)
    (tmp_path / "outside.data").write_bytes((export / "model.onnx.data").read_bytes())
    damage, words = VARIANTS[variant]
    damage(export)
    before = snapshot(tmp_path)
    rc, err = cli(["generate", export, "--prompt", "the cat", "--max-new-tokens", "2"])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before


def test_onnx_runtime_itself_refuses_external_data_outside(onnx_exports, tmp_path):
    """The pinned onnxruntime (pyproject: >= 1.32) refuses a location outside the model's
    directory on its own, without layershare's check in front of it -- as one line."""
    from layershare.errors import LayershareError
    from layershare.formats.onnx import ort_session

    export = tmp_path / "export"
    shutil.copytree(onnx_exports("llama-residual")[2], export)
    (tmp_path / "outside.data").write_bytes((export / "model.onnx.data").read_bytes())
    _mutate_graph(export, _set("location", "../outside.data"))
    with pytest.raises(LayershareError, match="ONNX Runtime cannot load it.*escapes"):
        ort_session(export / "model.onnx")
