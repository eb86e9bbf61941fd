"""Greedy generation and perplexity with ONNX Runtime alone: numpy, onnxruntime, tokenizers.

No torch and no transformers are imported on this path (a test checks ``sys.modules``), so
the memory and start-up measured here are what a deployment pays. The graph is the
``causal-lm`` layout of :mod:`layershare.formats.onnx_export`: a first call over the prompt
with an empty past (length 0), then one call per new token with the presents fed back.

Timing follows :mod:`layershare.infer`: prefill is the first call (the whole prompt, up to the
first next-token scores), decode the ``N - 1`` calls after it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..errors import LayershareError, first_line
from ..formats.onnx import ONNX_FILE, ort_errors, ort_session
from ..measure import GenerationTiming
from .export_files import check_inputs, eos_ids, load_tokenizer, read_export

__all__ = ["OrtCausalLM", "eos_ids", "load_tokenizer", "read_export"]


class OrtCausalLM:
    """A causal LM exported by ``layershare export --format onnx``, run by ONNX Runtime."""

    def __init__(self, directory: str | Path, threads: int | None = None, prepack: bool = True):
        self.directory = Path(directory)
        self.meta = read_export(self.directory)
        if self.meta["task"] != "causal-lm":
            raise LayershareError(f"{self.directory} is an exported {self.meta['task']}, not a "
                                  "causal language model")
        self.session = ort_session(self.directory / ONNX_FILE, threads, prepack)
        check_inputs(self.directory, self.meta, self.session)
        self.past_names = [n for n in self.meta["inputs"] if n.startswith("past_key_values.")]
        self.past_shapes = self.meta["past_shapes"]  # per layer: (kv-heads, head-dim)

    def empty_past(self, batch: int = 1) -> list[np.ndarray]:
        return [np.zeros((batch, heads, 0, dim), np.float32)
                for heads, dim in self.past_shapes for _ in (0, 1)]

    def step(self, ids: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list]:
        """(logits, presents) for ``ids`` (batch x new) after ``past``."""
        batch, new = ids.shape
        start = past[0].shape[2]
        feed = {"input_ids": ids.astype(np.int64),
                "attention_mask": np.ones((batch, start + new), np.int64),
                "position_ids": np.broadcast_to(np.arange(start, start + new, dtype=np.int64),
                                                (batch, new)).copy()}
        feed.update(zip(self.past_names, past))
        try:
            logits, *present = self.session.run(None, feed)
        except ort_errors() as exc:
            raise LayershareError(f"{self.directory / ONNX_FILE}: ONNX Runtime failed "
                                  f"({type(exc).__name__}: {first_line(exc)[:200]})") from None
        return logits, present

    def greedy(self, prompt: list[int], max_new_tokens: int, eos: set[int] | None = None,
               exact: bool = False) -> tuple[list[int], GenerationTiming]:
        """Greedy continuation of ``prompt`` (token ids): stop after an ``eos`` token, or, with
        ``exact``, exactly ``max_new_tokens`` new tokens, the ``eos`` ids never chosen (what
        transformers' ``min_new_tokens=max_new_tokens`` does, so the two agree)."""
        if not prompt:
            raise LayershareError("generate: the prompt encodes to no tokens")
        eos = set(eos or ())
        banned = sorted(eos) if exact else []
        out, times = [], []
        start = time.perf_counter()
        logits, past = self.step(np.array([prompt]), self.empty_past())
        while True:
            row = logits[0, -1]
            if banned:
                row = row.copy()
                row[banned] = -np.inf
            token = int(np.argmax(row))
            times.append(time.perf_counter())
            out.append(token)
            if len(out) >= max_new_tokens or (token in eos and not exact):
                break
            logits, past = self.step(np.array([[token]]), past)
        timing = GenerationTiming(prompt_tokens=len(prompt), new_tokens=len(out),
                                  prefill_s=times[0] - start, decode_s=times[-1] - times[0],
                                  decode_steps=len(times) - 1)
        return out, timing

    def nll(self, windows: np.ndarray) -> tuple[float, int]:
        """(summed NLL, predicted tokens) over ``windows`` (N x L ids), one window per call,
        predicting tokens 2..L of each (the protocol of :mod:`layershare.evaluate.perplexity`)."""
        total, count = 0.0, 0
        for window in windows:
            logits, _ = self.step(window[None, :], self.empty_past())
            logits = logits[0, :-1].astype(np.float64)
            top = logits.max(axis=-1, keepdims=True)
            logz = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
            targets = window[1:]
            total += float((logz - logits[np.arange(len(targets)), targets]).sum())
            count += len(targets)
        return total, count

    def perplexity(self, windows: np.ndarray) -> float:
        total, count = self.nll(windows)
        return math.exp(total / count)
