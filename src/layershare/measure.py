"""Generation timings, and the process's memory from ``/proc/self/status`` (Linux), without
importing torch (PyTorch's timed generation is :mod:`layershare.infer`).

``VmRSS`` is the resident set now, ``VmHWM`` its peak; :func:`reset_peak_rss` sets the peak
back to the current RSS (``/proc/self/clear_refs``) so that a measurement can start after the
imports. Used by :mod:`layershare.infer` (PyTorch) and :mod:`layershare.deploy` (ONNX Runtime).
"""

from __future__ import annotations

from dataclasses import dataclass


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
