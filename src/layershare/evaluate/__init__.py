"""Evaluation a user can trust: perplexity and label-free fidelity to the original model."""

from .perplexity import lm_quality

__all__ = ["lm_quality"]
