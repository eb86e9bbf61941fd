"""Test-time figures: perplexity, sacreBLEU, ROUGE, accuracy; and the decoding the CLI uses.

* LM: token-level perplexity over the whole split (every token predicted exactly once, see
  ``LMTask.eval_batches``), ``exp(total NLL / tokens)``;
* translation: beam-search output detokenized by the tokenizer, scored by sacreBLEU's
  ``corpus_bleu`` against the raw references (the standard 13a tokenization, so figures
  are comparable with published ones on the same data), chrF beside it; ``OUT/SPLIT.hyp`` and
  ``OUT/SPLIT.ref`` hold one sentence a line, beside the score;
* summarisation: the same beam search, stopped at the task's longest training summary,
  scored by ROUGE-1/2/L F1 (``rouge-score``, mean over pairs x 100; evaluate/rouge.py),
  with the same ``SPLIT.hyp`` / ``SPLIT.ref`` files;
* classification: accuracy and macro-F1 (scikit-learn; and loss).

Tokenizer ids count as BPE tokens, not words: perplexities of runs with different
tokenizers are not comparable.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ..data import EOS_ID, PAD_ID
from ..evaluate.rouge import rouge
from .tasks import Task, pad


def strip_ids(row: list[int]) -> list[int]:
    """Ids up to the first eos, without pad."""
    out = []
    for t in row:
        if t == EOS_ID:
            break
        if t != PAD_ID:
            out.append(t)
    return out


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
        src = src.to(device)
        with autocast():
            hyp = model.translate(src, beam_size=beam_size, max_len=max_len or None)
        texts = tok.decode_batch([strip_ids(r) for r in hyp.tolist()], skip_special_tokens=True)
        for i, text in zip(chunk, texts):
            out[i] = text.strip()
    model.train(was_training)
    return out


def bleu(hyps: list[str], refs: list[str]) -> float:
    from ..extras import require

    sacrebleu = require("sacrebleu")
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def macro_f1(truth: list[int], guess: list[int]) -> float:
    """Macro-averaged F1 (scikit-learn) over the classes that occur in ``truth`` or ``guess``,
    a fraction like the accuracy beside it: every class counts alike, however rare."""
    from ..extras import require

    require("sklearn")
    from sklearn.metrics import f1_score
    return float(f1_score(truth, guess, average="macro", zero_division=0))


def chrf(hyps: list[str], refs: list[str]) -> float:
    """sacrebleu's chrF (character 6-grams, beta 2), the usual companion of BLEU."""
    from ..extras import require

    sacrebleu = require("sacrebleu")
    return float(sacrebleu.corpus_chrf(hyps, [refs]).score)


def split_metrics(task: Task, model, split: str, device, out: Path | None = None,
                  autocast=nullcontext, raw_rows: list | None = None) -> dict:
    """``{split}_loss`` and ``{split}_ppl`` | ``{split}_bleu`` and ``_chrf`` |
    ``{split}_rouge1/2/L`` | ``{split}_acc`` and ``_macro_f1`` over a split.

    For translation and summarisation ``raw_rows`` are the split's (source, reference)
    strings (references are scored untokenized); hypotheses and references go to
    ``out/SPLIT.hyp|ref``.
    """
    cfg = task.cfg
    if task.kind == "asr":
        from .asr import asr_test_metrics
        return asr_test_metrics(task, model, device, out, autocast)
    figures = task.evaluate(model, split, device, autocast)
    result = {f"{split}_loss": figures["loss"]}
    if task.kind == "classification":
        result[f"{split}_acc"] = figures["acc"]
        result[f"{split}_macro_f1"] = macro_f1(*task.predictions(model, split, device, autocast))
        return result
    result[f"{split}_ppl"] = figures["ppl"]
    if task.kind == "lm":
        result[f"{split}_tokens"] = figures["targets"]
        return result
    rows = raw_rows if raw_rows is not None else task.raw[split]
    metric = "rouge" if task.kind == "summarisation" else "bleu"
    if cfg.eval.test_limit:
        rows = rows[:cfg.eval.test_limit]
        result[f"{split}_{metric}_pairs_limited_to"] = cfg.eval.test_limit
    start = time.perf_counter()  # decoding speed (LightFormer's claim); strings out = synced
    hyps = decode_rows(task, model, rows, device, cfg.eval.beam_size, autocast)
    result[f"{split}_decode_s"] = time.perf_counter() - start
    result[f"{split}_decode_sentences_per_s"] = len(rows) / result[f"{split}_decode_s"]
    refs = [t for _, t in rows]
    if out is not None:
        (Path(out) / f"{split}.hyp").write_text("".join(h.replace("\n", " ") + "\n" for h in hyps))
        (Path(out) / f"{split}.ref").write_text("".join(r.replace("\n", " ") + "\n" for r in refs))
    result.update({f"{split}_{name}": value for name, value in scores(task, hyps, refs).items()})
    result[f"{split}_pairs"] = len(rows)
    return result


def decode_rows(task: Task, model, rows: list, device, beam_size: int,
                autocast=nullcontext) -> list[str]:
    """The model's outputs for the sources of ``rows`` ((source, reference) strings)."""
    cfg = task.cfg
    return translate_lines(model, task.tok, [s for s, _ in rows], device, beam_size,
                           cfg.eval.max_len or task.decode_max_len, cfg.eval.batch_size,
                           cfg.train.seq_len, autocast)


def scores(task: Task, hyps: list[str], refs: list[str]) -> dict:
    """``bleu`` and ``chrf`` of ``hyps`` against the untokenized ``refs``, or ROUGE for
    summarisation."""
    if task.kind == "summarisation":
        return rouge(hyps, refs)
    return {"bleu": bleu(hyps, refs), "chrf": chrf(hyps, refs)}
