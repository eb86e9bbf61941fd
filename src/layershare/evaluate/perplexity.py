"""Perplexity of a causal LM on token windows, and its fidelity to a reference model.

Protocol (the compression papers' convention, printed beside every figure): the split's text
joined and tokenized with the model's own tokenizer, cut into non-overlapping windows of
``seq_len`` tokens (remainder dropped, data/windows.py); each window is scored on its own,
predicting tokens 2..seq_len; perplexity is ``exp(mean token NLL)`` over all windows.

Fidelity to a reference (the original model) needs no labels: the mean per-token
``KL(reference || model)`` of the next-token distributions and the top-1 agreement (how often
both models' most likely next token is the same), over the same windows. The two models run
batch by batch: no logits are kept beyond one batch.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids, use_cache=False) if hasattr(model, "config") else model(ids)
    return (out.logits if hasattr(out, "logits") else out).float()


def lm_quality(model: nn.Module, windows: torch.Tensor, batch_size: int = 4,
               reference: nn.Module | None = None, progress: bool = True) -> dict:
    """``{"perplexity", "nll", "tokens", "windows", "seq_len", "seconds"}`` of ``model`` on
    ``windows`` (N x seq_len token ids), plus ``"kl"`` and ``"top1"`` against ``reference``."""
    model.eval()
    nll_sum, kl_sum, agree, count = 0.0, 0.0, 0, 0
    start = time.perf_counter()
    bar = tqdm(total=windows.numel(), unit="tok", unit_scale=True, desc="eval",
               disable=not progress)
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            ids = windows[i:i + batch_size]
            logits = _logits(model, ids)[:, :-1]
            targets = ids[:, 1:]
            logp = F.log_softmax(logits, dim=-1)
            nll_sum += float(-logp.gather(-1, targets[..., None]).sum())
            count += targets.numel()
            if reference is not None:
                ref_logp = F.log_softmax(_logits(reference, ids)[:, :-1], dim=-1)
                kl_sum += float((ref_logp.exp() * (ref_logp - logp)).sum())
                agree += int((ref_logp.argmax(-1) == logp.argmax(-1)).sum())
            bar.update(ids.numel())
    bar.close()
    result = {"perplexity": math.exp(nll_sum / count), "nll": nll_sum / count, "tokens": count,
              "windows": len(windows), "seq_len": windows.shape[1],
              "seconds": time.perf_counter() - start}
    if reference is not None:
        result.update(kl=kl_sum / count, top1=agree / count)
    return result


def protocol(source: str, split: str, result: dict) -> str:
    """One line that says how a figure was measured."""
    return (f"{source} {split} split, {result['windows']} non-overlapping windows of "
            f"{result['seq_len']} tokens ({result['tokens']:,} predicted tokens)")
