"""A short LM run end to end, the CLI verbs on its output, and resume after kill -9."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_helpers import tiny, weights

import layershare
from layershare.cli import main
from layershare.train import load_config, train
from layershare.train.report import FinalWindow, read_metrics
from layershare.train.state import recover

RESULT_KEYS = {"params", "unique_params", "layer_params", "dense_layer_params",
               "train_tokens_per_s", "peak_mem_bytes", "peak_mem_kind", "test_ppl",
               "best_valid", "still_improving"}


def test_lm_run_lowers_loss_and_writes_outputs(tmp_path, text_data):
    out = tmp_path / "run"
    results = train(load_config(None, tiny(text_data, "text", share={"method": "residual"})),
                    out, progress=False)
    assert RESULT_KEYS <= set(results)
    assert json.loads((out / "results.json").read_text()) == results
    rows = read_metrics(out / "metrics.jsonl")
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert losses[-1] < losses[0] - 1.0
    assert results["test_ppl"] < 40 and results["method"] == "residual"
    assert (out / "loss.png").stat().st_size > 1000
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"best", "last"}
    model = layershare.load(out / "model")
    assert model.layershare_config.method == "residual"
    assert layershare.count(model).unique_params == results["unique_params"]
    assert (out / "model" / "tokenizer.json").is_file()
    # the last tenth of the 30 steps: speed on CPU, no resettable peak memory
    assert results["final_steps"] == 3 and results["final_tokens_per_s"] > 0
    assert "final_peak_mem_bytes" not in results


def test_final_window_counts_only_its_steps():
    window = FinalWindow(20, torch.device("cpu"))
    assert (window.start, window.end) == (18, 20)
    for step in range(0, 21):
        # 100 tokens per step; steps before the window took 1 s each, those in it 0.5 s
        window.after_step(step, 100 * step, step if step <= 18 else 18 + 0.5 * (step - 18))
    assert window.figures == {"final_steps": 2, "final_tokens_per_s": 200.0}
    resumed = FinalWindow(20, torch.device("cpu"))
    for step in (19, 20):  # resumed inside the window: no figures rather than wrong ones
        resumed.after_step(step, 100 * step, float(step))
    assert resumed.figures == {}


def test_cli_verbs(tmp_path, text_data, capsys):
    out = tmp_path / "run"
    sets = tiny(text_data, "text", train={"steps": 10})
    args = ["train", "--out", str(out)] + [a for s in sets for a in ("--set", s)]
    assert main(args + ["--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "--trust-config", str(out), "--split", "test"]) == 0
    figures = json.loads(capsys.readouterr().out)  # the saved model gives the run's figures
    results = json.loads((out / "results.json").read_text())
    assert figures["test_ppl"] == pytest.approx(results["test_ppl"], rel=1e-5)
    assert figures["test_ppl"] == pytest.approx(math.exp(figures["test_loss"]), rel=1e-6)
    assert main(["generate", str(out), "--prompt", "the cat", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("the cat")
    assert main(["translate", str(out)]) == 2  # an LM run cannot translate
    assert "not a translation" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--set", "model.nope=1"]) == 2
    assert "model.nope" in capsys.readouterr().err
    assert main(["train", "--help-config"]) == 0
    assert "share.transfer_at_step" in capsys.readouterr().out
    assert main(["data", "prepare", "no-such-recipe"]) == 2
    assert "unknown data recipe" in capsys.readouterr().err
    # the same command on a finished run re-evaluates; a changed config is refused
    assert main(args) == 0
    assert "already trained to step 10" in capsys.readouterr().out
    assert main(args + ["--set", "model.d_model=64"]) == 2
    assert "different config" in capsys.readouterr().err


def test_resume_after_kill_matches_unbroken_run(tmp_path, text_data):
    sets = tiny(text_data, "text", model={"dropout": 0.1},
                train={"steps": 150, "save_every": 3, "eval_every": 50, "log_every": 1})
    whole = tmp_path / "whole"
    train(load_config(None, sets), whole, progress=False)

    broken = tmp_path / "broken"
    cmd = [sys.executable, "-m", "layershare", "train", "--out", str(broken)]
    cmd += [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    info = broken / "checkpoints" / "last" / "info.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(info.read_text())["step"] >= 30:
                break
        except (OSError, ValueError):  # not written yet, or being replaced right now
            pass
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    recover(broken)  # what the next run does first: undo a kill between two renames
    killed_at = json.loads(info.read_text())["step"]
    assert 30 <= killed_at < 150 and not (broken / "results.json").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {killed_at}" in resumed.stderr + resumed.stdout
    a = weights(whole / "checkpoints" / "last" / "model")
    b = weights(broken / "checkpoints" / "last" / "model")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    steps = [r["step"] for r in read_metrics(broken / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 151))  # no line lost or repeated by the kill


@pytest.mark.parametrize("accum", [2])
def test_grad_accumulation_matches_big_batch(tmp_path, text_data, accum):
    one = train(load_config(None, tiny(text_data, "text", train={"steps": 5})),
                tmp_path / "one", progress=False)
    two = train(load_config(None, tiny(text_data, "text", train={"steps": 5, "grad_accum": accum})),
                tmp_path / "two", progress=False)
    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    assert one["train_tokens"] == two["train_tokens"]


def test_fresh_start_discards_leftovers(tmp_path, text_data):
    """A run killed before its first 'last' checkpoint starts over cleanly."""
    out = tmp_path / "run"
    (out / "checkpoints" / "best").mkdir(parents=True)
    (out / "checkpoints" / "best" / "info.json").write_text('{"step": 999}')
    (out / "tokenizer.json").write_text("not a tokenizer")
    (out / "train.lock").touch()  # what the killed run held: the directory is a run's
    sets = tiny(text_data, "text", train={"steps": 5, "eval_every": 5, "save_every": 5})
    results = train(load_config(None, sets), out, progress=False)
    assert results["best_valid"]["step"] == 5 and results["test_model"] == "best"


def test_recover_puts_back_a_checkpoint_renamed_away(tmp_path):
    """A kill between atomic_directory's two renames leaves only '.last.old-PID'."""
    root = tmp_path / "checkpoints"
    (root / ".last.old-123").mkdir(parents=True)
    (root / ".last.old-123" / "info.json").write_text('{"step": 7}')
    (root / ".last.tmp42").mkdir()  # a half-written new checkpoint
    recover(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["last"]
    assert json.loads((root / "last" / "info.json").read_text())["step"] == 7


def test_init_from_a_dense_run_transfers_its_weights(tmp_path, text_data):
    """LightFormer without repeating the dense phase: start from the trained dense model,
    SVD transfer at step 0; at full rank (and a vanishing learning rate) the merged result is
    the dense model."""
    dense_run = tmp_path / "dense"
    train(load_config(None, tiny(text_data, "text", train={"steps": 10})), dense_run,
          progress=False)
    sets = tiny(text_data, "text", share={"method": "lowrank", "group_size": 1, "rank": 128,
                                          "init": "mean"},
                train={"steps": 1, "lr": 1e-12, "warmup": 0, "weight_decay": 0.0})
    out = tmp_path / "transfer"
    train(load_config(None, sets + [f"model.init_from={dense_run}"]), out, progress=False)
    merged = layershare.merge(layershare.load(out / "model")).state_dict()
    source = layershare.load(dense_run / "model").state_dict()
    assert merged.keys() == source.keys()
    for name in source:
        torch.testing.assert_close(merged[name], source[name], rtol=0, atol=1e-4, msg=name)


def test_init_from_errors(tmp_path, text_data, capsys):
    shared = tmp_path / "shared"
    train(load_config(None, tiny(text_data, "text", share={"method": "residual"},
                                 train={"steps": 2})), shared, progress=False)
    wide = tiny(text_data, "text", model={"d_model": 48}, train={"steps": 2})
    for source, message in ((shared, "shares weights"), (tmp_path / "nope", "no such file"),
                            (tmp_path / "shared", "shares weights")):
        argv = ["train", "--out", str(tmp_path / "x")]
        for s in wide + [f"model.init_from={source}"]:
            argv += ["--set", s]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    dense = tmp_path / "dense"
    train(load_config(None, tiny(text_data, "text", train={"steps": 2})), dense, progress=False)
    argv = ["train", "--out", str(tmp_path / "y")]
    for s in wide + [f"model.init_from={dense}"]:
        argv += ["--set", s]
    assert main(argv) == 2
    assert "does not fit" in capsys.readouterr().err
