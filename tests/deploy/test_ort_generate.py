"""Generation and perplexity with ONNX Runtime alone (layershare/deploy), and
``layershare generate DIR --runtime onnx`` without importing torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from layershare.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_greedy_tokens_equal_torch(onnx_exports):
    from layershare.deploy.ort_generate import OrtCausalLM

    model, _, out, _ = onnx_exports("llama-residual")
    ort = OrtCausalLM(out)
    for seed in range(3):
        ids = torch.randint(3, 96, (1, 6 + seed), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24,
                                 min_new_tokens=24, do_sample=False, pad_token_id=0)
        got, timing = ort.greedy(ids[0].tolist(), 24, exact=True)
        assert got == ref[0, ids.shape[1]:].tolist()
        assert timing.new_tokens == 24 and timing.decode_steps == 23


def test_exact_greedy_never_picks_eos_like_min_new_tokens(onnx_exports):
    """``exact`` with ``eos`` bans the eos ids, as transformers' ``min_new_tokens`` does: make
    the token greedy picks first an eos id, and both must pick the same other tokens."""
    from layershare.deploy.ort_generate import OrtCausalLM

    model, _, out, _ = onnx_exports("llama-residual")
    ort = OrtCausalLM(out)
    ids = torch.randint(3, 96, (1, 7), generator=torch.Generator().manual_seed(11))
    first = ort.greedy(ids[0].tolist(), 1, exact=True)[0][0]
    got, _ = ort.greedy(ids[0].tolist(), 12, eos={first}, exact=True)
    assert first not in got and len(got) == 12
    with torch.no_grad():
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                             min_new_tokens=12, do_sample=False, pad_token_id=0,
                             eos_token_id=first)
    assert got == ref[0, ids.shape[1]:].tolist()
    stopped, _ = ort.greedy(ids[0].tolist(), 12, eos={first})
    assert stopped == [first]  # without exact: stop after the eos token


def test_perplexity_equals_torch(onnx_exports):
    from layershare.deploy.ort_generate import OrtCausalLM
    from layershare.evaluate.perplexity import lm_quality

    model, _, out, _ = onnx_exports("gpt2-lowrank")
    windows = torch.randint(0, 96, (3, 16), generator=torch.Generator().manual_seed(7))
    expected = lm_quality(model, windows, progress=False)["perplexity"]
    got = OrtCausalLM(out).perplexity(windows.numpy())
    assert abs(got / expected - 1) < 1e-5


def _run(argv, env_extra=None):
    code = ("import sys; from layershare.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', "
            "'TRANSFORMERS' if 'transformers' in sys.modules else 'NO-TRANSFORMERS'); "
            "sys.exit(rc)")
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_generate_onnx_imports_no_torch(onnx_exports):
    _, _, out, _ = onnx_exports("llama-residual")
    proc = _run(["generate", str(out), "--prompt", "the cat sat", "--max-new-tokens", "5"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("the cat sat")
    assert "tokens/s" in lines[1] and "peak RSS" in lines[1] and "ONNX Runtime" in lines[1]
    assert lines[-1] == "NO-TORCH NO-TRANSFORMERS"


def test_cli_generate_onnx_is_the_default_for_an_export(onnx_exports, capsys):
    _, _, out, int8 = onnx_exports("llama-residual")
    for directory in (out, int8):
        assert main(["generate", str(directory), "--prompt", "the mat", "--max-new-tokens",
                     "3"]) == 0
        assert "ONNX Runtime" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["not an export", "encoder", "sample", "torch on export"])
def test_cli_generate_onnx_bad_input_is_one_line_exit_2(onnx_exports, tmp_path, capsys, case):
    _, checkpoint, out, _ = onnx_exports("llama-residual")
    argv = {"not an export": [str(checkpoint), "--runtime", "onnx"],
            "encoder": [str(onnx_exports("bert-residual")[2]), "--runtime", "onnx"],
            "sample": [str(out), "--runtime", "onnx", "--sample"],
            "torch on export": [str(out), "--runtime", "torch"]}[case]
    message = {"not an export": "not a layershare ONNX export", "encoder": "not a causal",
               "sample": "greedily", "torch on export": "--runtime onnx"}[case]
    capsys.readouterr()  # the exporter's warnings, when building bert-residual just above
    assert main(["generate", *argv, "--prompt", "the cat"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("layershare: error: ") and message in err[0]


def test_export_metadata_describes_the_cache(onnx_exports):
    model, _, out, _ = onnx_exports("llama-residual")
    meta = json.loads((out / "onnx.json").read_text())
    assert meta["task"] == "causal-lm" and meta["num_layers"] == 4
    assert meta["past_shapes"] == [[2, 8]] * 4  # 2 kv heads of 8 dims (GQA)
    assert meta["inputs"][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert meta["outputs"][1] == "present.0.key"
    assert np.isfinite(meta["fp32"]["max_rel_error"])
