"""What the training benchmarks share (speech_scratch.py, lightformer.py): one ``layershare
train`` per run, resumable; the learning-rate sweep's rule; a run's valid figures; a log axis
whose labels read.

The sweep rule: every variant's rate is chosen from a grid by short runs scored on the
valid split, never on test. A best rate at an edge of the grid is no optimum, so the grid
grows past that edge (x2 or /2) until the best lies inside it or ``EXTEND`` rates were
added. A short run whose loss turns non-finite (the trainer stops it with "lower
train.lr") scores infinity and is marked ``diverged``: rerunning the sweep reads the mark
instead of diverging again.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
EXTEND = 2  # how many rates a sweep may add past the edge of its grid
DIVERGED = "diverged"  # the mark a sweep run leaves when its loss was non-finite


class Diverged(RuntimeError):
    """A run stopped by a non-finite loss."""


def train(config: str, overrides: list[str], out: Path, extra: list[str]) -> dict:
    """One ``layershare train`` (resumed if ``out`` holds an earlier start); its results.
    A run stopped by a non-finite loss raises :class:`Diverged` (its error printed)."""
    argv = [sys.executable, "-m", "layershare.cli", "train", "--config", str(CONFIGS / config),
            "--out", str(out), "--quiet"]
    for item in overrides + extra:
        argv += ["--set", item]
    print(" ".join(argv[2:]), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(argv, env=env, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        if "lower train.lr" in proc.stderr:  # the trainer's non-finite-loss error
            raise Diverged(proc.stderr.strip().splitlines()[-1])
        raise subprocess.CalledProcessError(proc.returncode, argv, stderr=proc.stderr)
    return json.loads((out / "results.json").read_text())


def config_lr(run: Path) -> float:
    """The rate the run trained at, from its own config.yaml."""
    import yaml
    return float(yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"])


def last_fifth_gain(curve: list[tuple[int, float]], higher_is_better: bool
                    ) -> tuple[float, float, float]:
    """The convergence rule of the training reports: the valid value at the evaluation
    nearest 80% of the last step, the best value from there on, and the relative gain
    between them (the run counts as converged when it is under 2%)."""
    step80, at80 = min(curve, key=lambda v: abs(v[0] - 0.8 * curve[-1][0]))
    after = [v for s, v in curve if s >= step80]
    best = max(after) if higher_is_better else min(after)
    gain = (best - at80) if higher_is_better else (at80 - best)
    return at80, best, gain / max(abs(at80), 1e-9)


def last_valid(run: Path, metric: str = "wer") -> float:
    """``metric`` at the run's last valid evaluation (metrics.jsonl)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r.get("split") == "valid"]
    return float(valid[-1][metric])


def sweep_loss(run: Path, start) -> float:
    """The last valid loss of the short run in ``run``, after ``start()`` trains it (a
    finished run is only read); infinity for a run that diverged, now or before."""
    if (run / DIVERGED).is_file():
        return math.inf
    if not (run / "results.json").is_file():
        try:
            start()
        except Diverged as err:
            (run / DIVERGED).write_text(f"{err}\n")
            return math.inf
    return last_valid(run, "loss")


def grown_sweep(lrs, score) -> dict[float, float]:
    """``score(lr)`` (lower is better) for every rate of ``lrs``; while the best sits at an
    edge of the rates tried, also for the next rate past it (x2 or /2), at most ``EXTEND``
    more."""
    scores = {lr: score(lr) for lr in lrs}
    while len(scores) < len(lrs) + EXTEND:
        best = min(scores, key=scores.get)
        if best == max(scores):
            scores[best * 2] = score(best * 2)
        elif best == min(scores):
            scores[best / 2] = score(best / 2)
        else:
            break
    return scores


def plain_log_x(ax) -> None:
    """A log-scale x axis labelled 0.5, 1, 2 (not 5x10^-1), the minor ticks only at 2, 3
    and 5 x a power of ten, so that neighbouring labels never overlap."""
    import matplotlib.ticker

    def label(x, _):
        mantissa = round(x / 10 ** math.floor(math.log10(x)), 6)
        return f"{x:g}" if mantissa in (1, 2, 3, 5) else ""

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(label))
