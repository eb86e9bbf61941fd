"""Helpers of the fault suite: the writing commands, snapshots of the user's files, and the
check every fault shares (exit 2, exactly one line on stderr, no traceback)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
WORDS = "the cat dog bird sat ran on over under mat tree house big small red blue".split()


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and directory under ``roots``: path -> (kind, sha256 or None, mode)."""
    seen = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            seen[str(root)] = ("absent",)
            continue
        for path in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            seen[str(path)] = ("file" if path.is_file() else "dir", digest, st.st_mode)
    return seen


def text_files(directory: Path) -> dict[str, str]:
    """Tiny train/valid/test text files for a training run."""
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", 200), ("valid", 20), ("test", 20)):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(n)]
        (directory / f"{split}.txt").write_text("\n".join(lines) + "\n")
        out[split] = str(directory / f"{split}.txt")
    return out


def train_sets(data: dict[str, str], steps: int = 4, **extra) -> list[str]:
    """``--set`` arguments of a tiny training run (seconds on CPU)."""
    values = {"data.name": "text", **{f"data.{k}": v for k, v in data.items()},
              "model.layers": 2, "model.d_model": 16, "model.heads": 2, "model.vocab_size": 280,
              "train.steps": steps, "train.batch_size": 4, "train.seq_len": 16,
              "train.warmup": 1, "train.eval_every": 2, "train.save_every": 2,
              "train.log_every": 1, "share.method": "residual", **extra}
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


def assert_one_line(rc: int, err: str, *needles: str) -> None:
    """Exit status 2, exactly one line on stderr, no traceback, the expected words."""
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("layershare: error: "), err
    for needle in needles:
        assert needle in err, err


def run_module(argv: list[str], timeout: int = 120, **kwargs) -> subprocess.CompletedProcess:
    """``python -m layershare ARGV`` in a fresh process (this checkout's sources first)."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "layershare", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
