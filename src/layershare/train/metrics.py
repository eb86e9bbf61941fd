"""Scores of outputs against references: sacreBLEU's BLEU and chrF, ROUGE, macro-F1.

Plain functions of strings or labels, apart from the model and the data, so that the test
figures (:mod:`.evaluate`) and ``eval.valid_decode`` during training (:mod:`.tasks`) score
alike without either importing the other. The scorers are optional extras, imported when
first used: a run that never scores text needs none of them.
"""

from __future__ import annotations

from ..evaluate.rouge import rouge


def bleu(hyps: list[str], refs: list[str]) -> float:
    from ..extras import require

    sacrebleu = require("sacrebleu")
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def chrf(hyps: list[str], refs: list[str]) -> float:
    """sacrebleu's chrF (character 6-grams, beta 2), the usual companion of BLEU."""
    from ..extras import require

    sacrebleu = require("sacrebleu")
    return float(sacrebleu.corpus_chrf(hyps, [refs]).score)


def macro_f1(truth: list[int], guess: list[int]) -> float:
    """Macro-averaged F1 (scikit-learn) over the classes that occur in ``truth`` or ``guess``,
    a fraction like the accuracy beside it: every class counts alike, however rare."""
    from ..extras import require

    require("sklearn")
    from sklearn.metrics import f1_score
    return float(f1_score(truth, guess, average="macro", zero_division=0))


def scores(task, hyps: list[str], refs: list[str]) -> dict:
    """``bleu`` and ``chrf`` of ``hyps`` against the untokenized ``refs``, or ROUGE for
    summarisation (``task.kind``)."""
    if task.kind == "summarisation":
        return rouge(hyps, refs)
    return {"bleu": bleu(hyps, refs), "chrf": chrf(hyps, refs)}
