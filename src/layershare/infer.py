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

import copy
import time

import torch

from .errors import LayershareError, first_line
from .measure import (  # noqa: F401
    GenerationTiming,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,  # re-exported: benchmarks and the CLI read them here
)


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
    check_generation_config(model, max_new_tokens=max_new_tokens, **generate_kwargs)
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


def check_generation_config(model, **generate_kwargs) -> None:
    """The model's ``generation_config.json`` (a file of the user's model directory) with the
    call's options, as ``generate`` would validate it -- or one :class:`LayershareError`.

    Checked here, before ``generate``: there a ValueError may as well be a bug. Newer
    transformers moved some decoding modes (contrastive search, DoLa, group and constrained
    beam search) to Hub code that needs ``trust_remote_code``, which layershare never sets.
    """
    config = getattr(model, "generation_config", None)
    if config is None:
        return
    config = copy.deepcopy(config)
    where = "generation_config.json"
    try:
        config.update(**generate_kwargs)  # the call's options win, as in generate
        config.validate()
        mode = config.get_generation_mode()
    except ValueError as exc:
        raise LayershareError(f"{where}: {first_line(exc)}") from None
    try:
        from transformers.generation.utils import GENERATION_MODES_MAPPING
    except ImportError:  # older transformers run every mode themselves
        return
    if "/" in GENERATION_MODES_MAPPING.get(mode, ""):  # a Hub repository, i.e. remote code
        raise LayershareError(f"{where} asks for {mode.value.replace('_', ' ')}, which "
                              "transformers now runs as remote code from the Hub; layershare "
                              "does not run remote code: remove its settings from the file")
