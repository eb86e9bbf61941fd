"""What a finished run measures and reports, read off the trainer once at the end.

* :func:`run_figures`: what every run reports, distillation included -- parameter counts,
  steps, tokens, time, peak memory, the final window, the best valid point;
* :func:`test_figures`: the ordinary run's own measurement of the tested model -- the
  task's test split (:func:`.evaluate.split_metrics`), static memory measured and in closed
  form, DLT's figures (distillation measures its own instead: train/distill_run.py).

Apart from trainer.py, which is the training loop: nothing here runs while it trains, and
none of it writes. The trainer is passed in, never imported (trainer.py imports this).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import count
from .evaluate import split_metrics
from .memory import closed_form_bytes
from .report import RESULTS, FinalWindow, peak_memory


def run_figures(trainer, model) -> dict:
    """Counts of ``model`` (the tested one) and the training run's figures."""
    mem, mem_kind = peak_memory(trainer.device)
    window = trainer.window
    if window is not None:  # the CUDA peak from before the window's reset counts too
        mem = max(mem, window.peak_before)
    history, best = trainer.history, trainer.best
    return {**count(model).to_dict(),
            "steps": trainer.step, "train_tokens": trainer.tokens,
            "train_time_s": trainer.train_time,
            "train_tokens_per_s": trainer.tokens / max(trainer.train_time, 1e-9),
            "peak_mem_bytes": mem, "peak_mem_kind": mem_kind, "device": str(trainer.device),
            "world_size": trainer.d.world,
            **(window.figures if window is not None else {}),
            "best_valid": best,
            # the last evaluation was the best: more steps might still have helped
            "still_improving": bool(history) and best is not None
            and best["step"] == history[-1][0] and len(history) > 1,
            "test_model": "best" if model is not trainer.plain else "last"}


def test_figures(trainer, model) -> dict:
    """The task's test figures of ``model`` and the training run's own (memory, DLT)."""
    cfg = trainer.cfg
    test = split_metrics(trainer.task, model, "test", trainer.device, trainer.out,
                         trainer.autocast)
    results = {"task": trainer.task.kind, "data": cfg.data.name, "method": cfg.share.method,
               "params": sum(p.numel() for p in model.parameters()),
               "transfer_at_step": cfg.share.transfer_at_step,
               **static_figures(trainer.model, model, getattr(trainer, "static_mem", None)),
               **test}
    if trainer.dlt is not None:
        trainer.dlt.finish(results, model)
    return {**earlier_window(trainer.out, trainer.step, trainer.window), **results}


def static_figures(trained, tested, measured: tuple[int, str] | None) -> dict:
    """Static memory after the last ``optimizer.step()`` (``measured``, the paper's metric)
    and the closed form of the model trained then and of the tested model
    (:mod:`.memory`)."""
    out = {"closed_form_mem_bytes": closed_form_bytes(trained),
           "test_model_closed_form_mem_bytes": closed_form_bytes(tested)}
    if measured is not None:  # not measured when a finished run is only re-tested
        out.update(static_mem_bytes=measured[0], static_mem_kind=measured[1])
    return out


def earlier_window(out: Path, step: int, window: FinalWindow | None) -> dict:
    """A re-run of a finished training measures no final window; keep the figures the
    finishing run measured (same step count) instead of dropping them."""
    if window is not None and window.figures:
        return {}
    try:
        earlier = json.loads((out / RESULTS).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("steps") != step:
        return {}
    return {k: v for k, v in earlier.items() if k.startswith("final_")}
