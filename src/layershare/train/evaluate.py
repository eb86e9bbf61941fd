"""Test-time figures: perplexity, sacreBLEU, ROUGE, accuracy (:func:`split_metrics`).

* LM: token-level perplexity over the whole split (every token predicted exactly once, see
  ``LMTask.eval_batches``), ``exp(total NLL / tokens)``;
* translation: beam-search output detokenized by the tokenizer, scored by sacreBLEU's
  ``corpus_bleu`` against the raw references (the standard 13a tokenization, so figures
  are comparable with published ones on the same data), chrF beside it; ``OUT/SPLIT.hyp`` and
  ``OUT/SPLIT.ref`` hold one sentence a line, beside the score;
* summarisation: the same beam search, stopped at the task's longest training summary,
  scored by ROUGE-1/2/L F1 (``rouge-score``, mean over pairs x 100; evaluate/rouge.py),
  with the same ``SPLIT.hyp`` / ``SPLIT.ref`` files;
* classification: accuracy and macro-F1 (scikit-learn; and loss);
* asr: the task's own protocol, WER of every test split (:meth:`.asr.ASRTask.test_metrics`).

Tokenizer ids count as BPE tokens, not words: perplexities of runs with different
tokenizers are not comparable. The decoding is :mod:`.decode`'s and the scorers are
:mod:`.metrics`', both shared with training's ``eval.valid_decode``.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from .. import limits
from ..errors import LayershareError
from ..outputs import replace_file
from .decode import decode_rows
from .metrics import macro_f1, scores
from .tasks import Task


def split_metrics(task: Task, model, split: str, device, out: Path | None = None,
                  autocast=nullcontext, raw_rows: list | None = None) -> dict:
    """``{split}_loss`` and ``{split}_ppl`` | ``{split}_bleu`` and ``_chrf`` |
    ``{split}_rouge1/2/L`` | ``{split}_acc`` and ``_macro_f1`` over a split.

    For translation and summarisation ``raw_rows`` are the split's (source, reference)
    strings (references are scored untokenized); hypotheses and references go to
    ``out/SPLIT.hyp|ref``.
    """
    cfg = task.cfg
    if task.kind == "asr":  # its own protocol: every test split (asr.py)
        return task.test_metrics(model, device, out, autocast)
    # a run directory's tokenizer.json may have been swapped for a larger one: its ids
    # would index past the model's embedding (an IndexError deep in the model)
    limits.tokens_fit(model, task.token_ids(split), f"the run's tokenizer on the {split} split")
    classes = getattr(getattr(model, "config", None), "n_classes", None)
    if task.kind == "classification" and classes is not None and len(task.labels) != classes:
        # a class id past the model's head would be an IndexError in the loss
        raise LayershareError(f"the run's labels.json names {len(task.labels)} classes, the "
                              f"model has {classes}")
    # the loss figures only: translation's evaluate() would also greedy-decode the first
    # eval.valid_decode pairs of valid, which the whole split's decoding below supersedes
    figures = task.loss_figures(model, split, device, autocast)
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
        # renamed into place: a run directory's test.hyp linked out of it is not written through
        replace_file(Path(out) / f"{split}.hyp", "".join(h.replace("\n", " ") + "\n" for h in hyps))
        replace_file(Path(out) / f"{split}.ref", "".join(r.replace("\n", " ") + "\n" for r in refs))
    result.update({f"{split}_{name}": value for name, value in scores(task, hyps, refs).items()})
    result[f"{split}_pairs"] = len(rows)
    return result

