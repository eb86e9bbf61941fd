"""FSDP2 (train.parallel: fsdp): 2 CPU processes (torchrun, gloo) with shared tensors.

FSDP2 runs on CPU with gloo in torch 2.13 (fully_shard on a list of modules, uneven shards,
reduce-scatter, DCP save/load): these tests need no GPU.

* the weights after N steps equal a single process's on the same global batch (rtol 1e-4,
  atol 1e-5, as for DDP: the ranks' reduce-scatter sums in another order);
* every rank sees, for each shared tensor, the sum of its users' gradients (fsdp_worker.py);
* kill -9 of the launcher and its workers (tests/torchrun_helpers.py) after a checkpoint,
  then the same command resumes from that checkpoint: the weights of an unbroken FSDP run,
  bit for bit; ``consolidate`` turns the sharded checkpoint into the compact one.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch
from torchrun_helpers import kill_after_checkpoint
from train_helpers import tiny, weights

from layershare.train import load_config, train
from layershare.train.fsdp import consolidate
from layershare.train.report import read_metrics

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _torchrun(args, **kw):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            *args]


def _train_cmd(sets, out):
    cmd = _torchrun(["-m", "layershare", "train", "--quiet", "--out", str(out)])
    return cmd + [a for s in sets for a in ("--set", s)]


def _close(a, b, **tol):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name, **tol)


def test_fsdp_equals_one_process_and_resumes_exactly_after_kill(tmp_path, text_data):
    sets = tiny(text_data, "text", share={"method": "residual"},
                train={"steps": 12, "batch_size": 8, "eval_every": 6, "save_every": 3,
                       "log_every": 1, "parallel": "fsdp"})
    train(load_config(None, sets), tmp_path / "one", progress=False)  # one process: no FSDP

    done = subprocess.run(_train_cmd(sets, tmp_path / "two"), capture_output=True, text=True,
                          timeout=300, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    last = tmp_path / "two" / "checkpoints" / "last"
    assert (last / "sharded" / ".metadata").is_file()
    a, b = weights(tmp_path / "one" / "checkpoints" / "last" / "model"), weights(last / "model")
    _close(a, b, rtol=1e-4, atol=1e-5)
    norms = [[r["grad_norm"] for r in read_metrics(tmp_path / run / "metrics.jsonl")
              if r["split"] == "train"] for run in ("one", "two")]
    assert len(norms[0]) == 12 and min(norms[0]) > 0
    torch.testing.assert_close(norms[1], norms[0], rtol=1e-4, atol=0)

    # the compact checkpoint rebuilt from the shards alone equals the one rank 0 wrote
    consolidate(last, tmp_path / "consolidated")
    _close(weights(tmp_path / "consolidated"), b, rtol=0, atol=0)

    # kill -9 (every process of the job) once a checkpoint before the end exists, resume
    out = tmp_path / "killed"
    killed_at = kill_after_checkpoint(_train_cmd(sets, out), out, ENV)
    assert killed_at is not None and killed_at < 12, "the run ended before it could be killed"
    loud = [a for a in _train_cmd(sets, out) if a != "--quiet"]  # prints where it resumes
    done = subprocess.run(loud, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming from step {killed_at} " in done.stdout, done.stdout
    _close(weights(out / "checkpoints" / "last" / "model"), b, rtol=0, atol=0)


def test_shared_tensors_get_the_sum_of_their_users_gradients_on_every_rank(tmp_path):
    done = subprocess.run(_torchrun([str(HERE / "fsdp_worker.py"), str(tmp_path)]),
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in (0, 1):
        assert (tmp_path / f"ok-{rank}").read_text().startswith("checked")
