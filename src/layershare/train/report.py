"""What a run writes besides checkpoints: metrics.jsonl, TensorBoard, loss.png, results.json.

``metrics.jsonl`` is the record of truth (one JSON object per line, ``{"step", "split",
...}``); TensorBoard mirrors it when installed, and the plot is drawn from it at the end,
so a resumed run's curve is the same as an unbroken run's.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch

METRICS, PLOT, RESULTS = "metrics.jsonl", "loss.png", "results.json"


class MetricsLog:
    """Appends to ``OUT/metrics.jsonl``; on resume, first drops lines after ``step``."""

    def __init__(self, out: Path, resume_step: int = 0, enabled: bool = True):
        self.path, self.enabled, self.tb = Path(out) / METRICS, enabled, None
        if not enabled:
            return
        if self.path.exists():
            rows = read_metrics(self.path)
            keep = [r for r in rows if r["step"] <= resume_step] if resume_step else []
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            self.tb = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=resume_step or None)
        except ImportError:
            self.tb = None

    def log(self, step: int, split: str, **values) -> None:
        if not self.enabled:
            return
        row = {"step": step, "split": split, **values}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: ignore it
            continue
    return rows


def plot_losses(out: Path) -> Path | None:
    """Train and valid loss against step, as ``OUT/loss.png`` (matplotlib, no display)."""
    rows = read_metrics(Path(out) / METRICS) if (Path(out) / METRICS).exists() else []
    if not rows:
        return None
    from ..extras import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for split, style in (("train", "-"), ("valid", "o-")):
        pts = [(r["step"], r["loss"]) for r in rows if r["split"] == split and "loss" in r]
        if pts:
            ax.plot(*zip(*pts), style, label=split, markersize=3)
    for r in rows:
        if r["split"] == "transfer":
            ax.axvline(r["step"], color="grey", linestyle="--", label="weight transfer")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per target token or character)")
    ax.set_title(Path(out).name)
    ax.legend(loc="upper left")
    wer = [(r["step"], r["wer"]) for r in rows if r["split"] == "valid" and "wer" in r]
    if wer:  # a recogniser: its valid WER on a second axis
        ax2 = ax.twinx()
        ax2.plot(*zip(*wer), "s--", color="tab:red", markersize=3, label="valid WER %")
        ax2.set_ylabel("valid WER %")
        ax2.legend(loc="upper right")
    fig.tight_layout()
    path = Path(out) / PLOT
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory in bytes and what was measured: CUDA allocator peak, or the process's
    peak resident set size on CPU (Linux reports kB, macOS bytes)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "cpu_peak_rss"


class FinalWindow:
    """Speed and peak memory over the last ``fraction`` of the optimizer steps.

    Why: a run whose parameter set changes while it trains (DLT starts dense and ties layers
    as it goes) has its whole-run peak at the start; its steady-state cost is the last part.
    The window opens when ``start`` steps are done: the CUDA allocator's peak is reset there.
    On CPU only the speed is kept (the peak RSS cannot be reset). A run resumed after the
    window opened reports no window figures."""

    def __init__(self, steps: int, device: torch.device, fraction: float = 0.1):
        self.start, self.end = steps - max(1, round(fraction * steps)), steps
        self.device, self.opened, self.figures = device, None, {}
        self.peak_before = 0  # the CUDA peak the reset forgets: the whole run's is the max

    def after_step(self, step: int, tokens: int, seconds: float) -> None:
        """Call with the steps done so far (also once before the first) and the run's
        token and training-time totals, synchronised with the GPU at ``start`` and ``end``."""
        cuda = self.device.type == "cuda"
        if step == self.start:
            if cuda:
                self.peak_before = int(torch.cuda.max_memory_allocated(self.device))
                torch.cuda.reset_peak_memory_stats(self.device)
            self.opened = (step, tokens, seconds)
        elif step == self.end and self.opened is not None:
            s0, t0, sec0 = self.opened
            self.figures = {"final_steps": step - s0,
                            "final_tokens_per_s": (tokens - t0) / max(seconds - sec0, 1e-9)}
            if cuda:
                self.figures["final_peak_mem_bytes"] = int(
                    torch.cuda.max_memory_allocated(self.device))


def write_results(out: Path, results: dict) -> Path:
    path = Path(out) / RESULTS
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    return path


def summary_line(r: dict) -> str:
    """The one line a finished run prints: its size and its headline test figure."""
    score = next((f"{k} {r[k]:.4g}" for k in ("test_wer", "test_ppl", "test_bleu",
                                               "test_rougeL", "test_acc") if k in r), "")
    return (f"{r['method']}: {r['unique_params']:,} params ({r['layer_params']:,} in layers, "
            f"{r['compression']:.2f}x), {score}, {r['train_tokens_per_s']:,.0f} tokens/s")
