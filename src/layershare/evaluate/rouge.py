"""ROUGE-1, ROUGE-2 and ROUGE-L F1 of summaries, with Google's ``rouge-score`` (PyPI).

``rouge-score`` is the Python reimplementation of ROUGE-1.5.5 that published summarisation
figures use (LightFormer's included), so our figures compare with theirs: text lower-cased,
cut into ASCII letter/digit tokens, Porter-stemmed (``use_stemmer=True``: "runs" and
"running" match); F1 of unigram and bigram overlap and of the longest common subsequence.
Each pair is scored alone and the F1s are averaged over the split, then multiplied by 100,
as papers report them (not a corpus-level pooled count: a long summary weighs no more than
a short one). ``rougeL`` treats each summary as one sequence, which for one-line summaries
(Debian synopses) equals ``rougeLsum``.

The library is an optional dependency (``pip install 'layershare[summarisation]'``);
:func:`require_rouge` lets a training run fail at its start, not after hours of training.
"""

from __future__ import annotations

from ..errors import LayershareError

METRICS = ("rouge1", "rouge2", "rougeL")
INSTALL = "pip install 'layershare[summarisation]' (PyPI rouge-score)"


def require_rouge():
    """The ``rouge_score.rouge_scorer`` module, or a one-line error saying what to install."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise LayershareError(f"ROUGE needs the rouge-score package: {INSTALL}") from None
    return rouge_scorer


def rouge(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """``{"rouge1", "rouge2", "rougeL"}``: mean F1 x 100 of each hypothesis against its
    reference (one reference per hypothesis)."""
    if len(hypotheses) != len(references):
        raise LayershareError(f"{len(hypotheses)} summaries but {len(references)} references")
    if not references:
        raise LayershareError("no summaries to score")
    scorer = require_rouge().RougeScorer(list(METRICS), use_stemmer=True)
    totals = dict.fromkeys(METRICS, 0.0)
    for hyp, ref in zip(hypotheses, references):
        scores = scorer.score(ref, hyp)  # (target, prediction): the reference first
        for name in METRICS:
            totals[name] += scores[name].fmeasure
    return {name: 100.0 * total / len(references) for name, total in totals.items()}
