"""DDP: 2 CPU processes (torchrun, gloo) reach the weights of 1 process on the same global batch,
with the same gradient at every step (the logged pre-clipping norm: AdamW's update and
clipping hide a gradient-scale error such as summing instead of averaging across ranks)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from train_helpers import tiny, weights

from layershare.train import load_config, train
from layershare.train.report import read_metrics


@pytest.mark.parametrize("share", [
    {"method": "residual"},
    {"method": "lowrank", "rank": 8, "transfer_at_step": 6},  # LightFormer: re-wrapped DDP
], ids=["residual", "lightformer"])
def test_two_processes_equal_one(tmp_path, text_data, share):
    sets = tiny(text_data, "text", share=share,
                train={"steps": 12, "batch_size": 8, "eval_every": 6, "save_every": 6,
                       "log_every": 1})
    train(load_config(None, sets), tmp_path / "one", progress=False)

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "layershare", "train", "--quiet", "--out", str(tmp_path / "two")]
    cmd += [a for s in sets for a in ("--set", s)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", **os.environ})
    assert done.returncode == 0, done.stdout + done.stderr
    a = weights(tmp_path / "one" / "checkpoints" / "last" / "model")
    b = weights(tmp_path / "two" / "checkpoints" / "last" / "model")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    norms = [[r["grad_norm"] for r in read_metrics(tmp_path / run / "metrics.jsonl")
              if r["split"] == "train"] for run in ("one", "two")]
    assert len(norms[0]) == 12 and min(norms[0]) > 0
    torch.testing.assert_close(norms[1], norms[0], rtol=1e-4, atol=0)
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["world_size"] == 2
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert results["train_tokens"] == one["train_tokens"]
