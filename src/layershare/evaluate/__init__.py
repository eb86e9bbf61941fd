"""Evaluation a user can trust: perplexity and label-free fidelity to the original model
(perplexity.py, fidelity.py), word error rate of speech recognisers (wer.py)."""

from .perplexity import lm_quality

__all__ = ["lm_quality"]
