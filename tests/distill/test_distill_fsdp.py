"""``layershare distill --parallel fsdp``: 2 CPU processes (torchrun, gloo), FSDP2 student.

The student (a residual Llama, K=2: units {0,1}, {2,3} and the root) is trained with
``--trainable lowrank``, so every unit mixes frozen tensors (the shared full-rank matrices;
the embeddings in the root) with trainable ones (low-rank factors, diagonals, norms):

* the FSDP run is killed (kill -9, every process) after a checkpoint and resumed by the
  same command; its weights after 12 steps, and its 12 per-step gradient norms, equal one
  process's on the same global batch (rtol 1e-4, atol 1e-5, as for DDP and FSDP train: the
  ranks' reduce-scatter sums in another order);
* the frozen tensors are bit for bit the student's, and the sharded AdamW state holds no
  entry for any of them;
* ``OUT/model`` is a compact checkpoint that ``layershare.load`` reads.

Resume. One FSDP run, killed and resumed, compared with one process at 1e-4: a resume
that lost or misplaced AdamW's state, the step or the data order moves the weights by about
the learning rate (3e-3), far outside the tolerance (checked by breaking it). Bit-for-bit
equality of a resumed and an unbroken FSDP run is proven by
tests/train/test_train_fsdp.py through the same code (``Trainer.checkpoint`` ->
``fsdp.stage_shards``, ``Trainer.build`` -> ``fsdp.load_sharded``); an unbroken FSDP
distillation here would cost one more torchrun (about 25 s on 2 cores).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from distill_helpers import args
from safetensors.torch import load_file
from torchrun_helpers import kill_after_checkpoint

import layershare
from layershare.cli import main
from layershare.train.report import read_metrics

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
STEPS = 12


def _cmd(pair, out):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "layershare"] + _args(pair, out)


def _args(pair, out):
    return args(pair, out, "--parallel", "fsdp", "--save-every", "3", "--eval-every", "6",
                "--no-baseline", steps=STEPS)


def _weights(run: Path) -> dict:
    return load_file(run / "checkpoints" / "last" / "model" / "model.safetensors")


def _norms(run: Path) -> list[float]:
    return [r["grad_norm"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]


def _sharded_keys(run: Path) -> list[str]:
    """The keys of the DCP checkpoint (its metadata: no tensor is read)."""
    from torch.distributed.checkpoint import FileSystemReader
    meta = FileSystemReader(str(run / "checkpoints" / "last" / "sharded")).read_metadata()
    return list(meta.state_dict_metadata)


def test_fsdp_distill_killed_and_resumed_equals_one_process_and_keeps_frozen_frozen(
        tmp_path, lm):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(lm, one)) == 0  # one process: train.parallel is ignored

    # kill -9 (every process of the job) after a checkpoint before the end, then resume
    killed_at = kill_after_checkpoint(_cmd(lm, two), two, ENV)
    assert killed_at is not None and killed_at < STEPS, "the run ended before it was killed"
    assert not (two / "results.json").exists()
    loud = [a for a in _cmd(lm, two) if a != "--quiet"]  # prints where it resumes
    done = subprocess.run(loud, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming from step {killed_at} " in done.stdout, done.stdout
    steps = [r["step"] for r in read_metrics(two / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, STEPS + 1))

    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    assert min(_norms(one)) > 0
    torch.testing.assert_close(_norms(two), _norms(one), rtol=1e-4, atol=0)

    # --trainable lowrank under FSDP: frozen tensors unchanged, no optimizer state for them
    start = load_file(Path(lm["student"]) / "model.safetensors")
    frozen = [n for n in start if n.endswith(".shared") or "embed" in n]
    assert len(frozen) > 4
    for name in frozen:
        assert torch.equal(b[name], start[name]), name
    assert any(not torch.equal(b[n], start[n]) for n in start if "lora" in n)
    keys = _sharded_keys(two)
    moments = [k for k in keys if k.startswith("optim.state.") and k.endswith(".exp_avg")]
    assert moments and all("lora" in k or "diag" in k or "norm" in k for k in moments), moments
    assert not any(".shared." in k or "embed" in k for k in moments)

    # OUT/model: a normal compact checkpoint (the best validation checkpoint)
    r = json.loads((two / "results.json").read_text())
    assert r["world_size"] == 2 and r["steps"] == STEPS and r["after"]["kl"] > 0
    model = layershare.load(two / "model")
    assert model.layershare_config.method == "residual"
    best = load_file(two / "checkpoints" / "best" / "model" / "model.safetensors")
    compact = load_file(two / "model" / "model.safetensors")
    assert compact.keys() == best.keys() and all(torch.equal(compact[k], best[k]) for k in best)
