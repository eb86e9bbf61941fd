"""Decoding a Seq2Seq model's outputs to text: the one search the test figures
(:mod:`.evaluate`), ``eval.valid_decode`` during training (:mod:`.tasks`) and
``layershare translate`` share, so their outputs agree.

It imports neither :mod:`.tasks` nor :mod:`.evaluate` (a task is only read for its
``cfg``, ``tok`` and ``decode_max_len``): both of them use it, and a module both import
cannot close an import cycle between them.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from .. import limits
from ..data import EOS_ID
from .ids import pad, strip_ids


def source_batches(tok, lines: list[str], batch_size: int,
                   max_src: int = 0) -> list[tuple[list[int], torch.Tensor]]:
    """``lines`` tokenized (cut to ``max_src - 1`` tokens if > 0, then eos), sorted by length
    and padded in batches of ``batch_size`` (less padding, faster decoding): (the batch's
    indices into ``lines``, its source ids) per batch."""
    ids = [e.ids for e in tok.encode_batch(list(lines))]
    if max_src:
        ids = [row[:max_src - 1] for row in ids]
    ids = [row + [EOS_ID] for row in ids]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    chunks = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    return [(chunk, pad([ids[i] for i in chunk])) for chunk in chunks]


@torch.no_grad()
def translate_lines(model, tok, lines: list[str], device, beam_size: int = 4,
                    max_len: int = 0, batch_size: int = 32, max_src: int = 0,
                    autocast=nullcontext) -> list[str]:
    """Detokenized translations of ``lines``, batched by source length (faster: less
    padding) and returned in input order. The model is left in the mode it came in: a
    training run that decodes its valid pairs keeps its dropout."""
    was_training = model.training
    model.eval()
    out: list[str] = [""] * len(lines)
    for chunk, src in source_batches(tok, lines, batch_size, max_src):
        # a run directory's tokenizer may be larger than its model (``translate RUN``)
        limits.tokens_fit(model, src, "the source text")
        src = src.to(device)
        with autocast():
            hyp = model.translate(src, beam_size=beam_size, max_len=max_len or None)
        texts = tok.decode_batch([strip_ids(r) for r in hyp.tolist()], skip_special_tokens=True)
        for i, text in zip(chunk, texts):
            out[i] = text.strip()
    model.train(was_training)
    return out


def decode_rows(task, model, rows: list, device, beam_size: int,
                autocast=nullcontext) -> list[str]:
    """The model's outputs for the sources of ``rows`` ((source, reference) strings), with
    the run's decoding settings (``task.cfg``) and the task's length cap."""
    cfg = task.cfg
    return translate_lines(model, task.tok, [s for s, _ in rows], device, beam_size,
                           cfg.eval.max_len or task.decode_max_len, cfg.eval.batch_size,
                           cfg.train.seq_len, autocast)
