"""Learning-rate schedules as pure functions of the step.

A function of the step (instead of a stateful ``LRScheduler``) makes resuming trivial: the
rate at step ``s`` is the same whether the run started at 0 or resumed at ``s - 1``.
"""

from __future__ import annotations

import math


def lr_at(step: int, peak: float, warmup: int, total: int, schedule: str = "cosine",
          min_lr: float = 0.0) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total``.

    Linear warm-up from ``peak / warmup`` to ``peak`` over ``warmup`` steps, then

    * ``cosine``: half a cosine from ``peak`` down to ``min_lr`` at ``total`` (nanoGPT);
    * ``inverse-sqrt``: ``peak * sqrt(warmup / step)`` (Vaswani et al., 2017, the usual
      translation schedule; it never reaches zero);
    * ``constant``: ``peak``.
    """
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    if schedule == "inverse-sqrt":
        return peak * math.sqrt(max(warmup, 1) / max(step + 1, 1))
    if schedule == "cosine":
        span = max(total - warmup, 1)
        progress = min(max(step - warmup, 0) / span, 1.0)
        return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")
