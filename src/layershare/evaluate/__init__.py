"""Evaluation a user can trust: perplexity and label-free fidelity to the original model
(perplexity.py, fidelity.py), word error rate of speech recognisers (wer.py), ROUGE of
summaries (rouge.py; BLEU of translations is sacreBLEU's, in train/metrics.py)."""

from .perplexity import lm_quality

__all__ = ["lm_quality"]
