"""Timed generation and the process's memory: what ``layershare generate`` prints and
``benchmarks/bench_infer.py`` measures.

Prefill and decode are told apart inside one ``model.generate()`` call (transformers, greedy
or sampled, KV cache on): a logits processor notes the clock each time the model has just
produced next-token scores. The first note ends the prefill (the forward over the whole
prompt); the ``N - 1`` forwards between the first and the last note are the decode steps, one
token each. Memory is read from ``/proc/self/status`` (Linux): ``VmRSS`` now and ``VmHWM``,
the peak resident set, which ``reset_peak_rss`` sets back to the current RSS
(``/proc/self/clear_refs``) so that a measurement can start after the imports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GenerationTiming:
    prompt_tokens: int      # tokens in the prompt, summed over the batch
    new_tokens: int         # tokens generated per sequence
    prefill_s: float        # generate() start to the first next-token scores
    decode_s: float         # first to last next-token scores
    decode_steps: int       # forwards in decode_s (new_tokens - 1)
    batch: int = 1

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s

    @property
    def decode_tokens_per_s(self) -> float | None:
        if self.decode_steps == 0:
            return None
        return self.decode_steps * self.batch / self.decode_s

    def summary(self) -> str:
        decode = self.decode_tokens_per_s
        return (f"prefill: {self.prompt_tokens} tokens in {self.prefill_s * 1e3:.0f} ms "
                f"({self.prefill_tokens_per_s:.0f} tokens/s); decode: "
                + (f"{self.decode_steps * self.batch} tokens in {self.decode_s * 1e3:.0f} ms "
                   f"({decode:.1f} tokens/s)" if decode is not None else "no decode step"))


def timed_generate(model, input_ids: torch.Tensor, max_new_tokens: int, exact: bool = False,
                   **generate_kwargs) -> tuple[torch.Tensor, GenerationTiming]:
    """``model.generate(input_ids, max_new_tokens=...)`` with its prefill and decode timed.

    ``exact``: generate exactly ``max_new_tokens`` (end-of-sequence suppressed until then), as
    a benchmark needs. Other keyword arguments go to ``generate`` (``do_sample``...).
    """
    from transformers import LogitsProcessor, LogitsProcessorList

    class Clock(LogitsProcessor):
        def __init__(self):
            self.times = []

        def __call__(self, ids, scores):
            self.times.append(time.perf_counter())
            return scores

    clock = Clock()
    if exact:
        generate_kwargs["min_new_tokens"] = max_new_tokens
    generate_kwargs.setdefault("attention_mask", torch.ones_like(input_ids))
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids, max_new_tokens=max_new_tokens,
                             logits_processor=LogitsProcessorList([clock]), **generate_kwargs)
    times = clock.times
    timing = GenerationTiming(prompt_tokens=input_ids.numel(), new_tokens=len(times),
                              prefill_s=times[0] - start, decode_s=times[-1] - times[0],
                              decode_steps=len(times) - 1, batch=input_ids.shape[0])
    return out, timing


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def rss_bytes() -> int | None:
    """The process's resident set size now (None where /proc is not there)."""
    return _status("VmRSS")


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size (since start or the last reset_peak_rss)."""
    peak = _status("VmHWM")
    if peak is None:  # not Linux: ru_maxrss (kB on Linux, bytes on macOS) as a fallback
        import resource
        import sys
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024
    return peak


def reset_peak_rss() -> bool:
    """Set the peak RSS back to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
