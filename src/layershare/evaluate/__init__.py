"""Evaluation of (converted) models: word error rate of speech recognisers (wer.py)."""
