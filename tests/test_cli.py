"""The command line: convert / inspect / merge, and one-line errors with no output left."""

import json
import subprocess
import sys

import pytest
import tiny_models as T
import torch
import transformers

import layershare
from layershare.cli import main


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "gpt2"
    T.gpt2().save_pretrained(path)
    (path / "vocab.json").write_text("{}")  # tokenizer files travel with the model
    return path


def test_convert_inspect_merge(tmp_path, gpt2_dir, capsys):
    out, dense = tmp_path / "compact", tmp_path / "dense"
    assert main(["convert", str(gpt2_dir), "--method", "residual", "--group-size", "2",
                 "--rank", "4", "--strategy", "cycle", "--init", "stepwise",
                 "--out", str(out)]) == 0
    assert (out / "vocab.json").exists()
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("unique_params", "dense_params", "layer_params", "dense_layer_params",
                "bytes_on_disk"):
        assert isinstance(report[key], int)
    assert isinstance(report["compression"], float) and report["method"] == "residual"
    assert report["unique_params"] == layershare.count(layershare.load(out)).unique_params
    assert report["bytes_on_disk"] == sum(f.stat().st_size for f in out.iterdir())

    assert main(["merge", str(out), "--out", str(dense)]) == 0
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(dense).eval()
    ids = T.inputs("gpt2")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, layershare.load(out)(ids).logits,
                                   atol=1e-5, rtol=1e-5)
    assert (dense / "vocab.json").exists()


def test_explicit_plan_and_matrix_subset(tmp_path, gpt2_dir):
    out = tmp_path / "o"
    assert main(["convert", str(gpt2_dir), "--method", "lowrank", "--strategy", "0,0,0,1",
                 "--matrices", "o,ffn_in,ffn_out", "--diag", "--rank", "2", "--out", str(out)]) == 0
    config = json.loads((out / "layershare.json").read_text())["config"]
    assert config["strategy"] == [0, 0, 0, 1] and config["diag"] is True
    assert config["matrices"] == ["o", "ffn_in", "ffn_out"]


@pytest.mark.parametrize("args, message", [
    (["convert", "MISSING", "--method", "residual"], "no such file"),
    (["convert", "SRC", "--method", "pruning"], "invalid choice"),
    (["convert", "SRC", "--method", "residual", "--rank", "0"], "rank must be >= 1"),
    (["convert", "SRC", "--method", "residual", "--group-size", "9"], "larger than the stack"),
    (["convert", "SRC", "--method", "tied", "--strategy", "0,1"], "one group id per layer"),
    (["convert", "SRC", "--method", "tied", "--matrices", "q"], "fused"),
    (["inspect", "MISSING"], "no such checkpoint"),
    (["merge", "SRC", "--out", "OUT2"], "not a layershare checkpoint"),
])
def test_user_mistakes_print_one_line_and_leave_nothing(tmp_path, gpt2_dir, capsys, args, message):
    args = [str(gpt2_dir) if a == "SRC" else str(tmp_path / a) if a in ("MISSING", "OUT2") else a
            for a in args]
    if args[0] == "convert":
        args += ["--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("layershare: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_corrupted_checkpoint_via_module_entry_point(tmp_path, gpt2_dir):
    out = tmp_path / "ck"
    assert main(["convert", str(gpt2_dir), "--method", "tied", "--out", str(out)]) == 0
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    for argv in (["inspect", str(out)], ["merge", str(out), "--out", str(tmp_path / "m")]):
        proc = subprocess.run([sys.executable, "-m", "layershare", *argv],
                              capture_output=True, text=True)
        assert proc.returncode == 2
        assert "corrupted or truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()
