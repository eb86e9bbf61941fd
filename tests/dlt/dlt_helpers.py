"""Helpers of the DLT tests (a module of its own: ``conftest`` names are ambiguous)."""

import torch

from layershare.models import DecoderLM, DecoderLMConfig


def tiny_lm(n_layers: int = 4, seed: int = 0) -> DecoderLM:
    """A 16-wide DecoderLM over 48 tokens, no dropout: deterministic and built in ms."""
    torch.manual_seed(seed)
    cfg = DecoderLMConfig(vocab_size=48, d_model=16, n_heads=2, d_ff=32, max_len=32,
                          n_layers=n_layers, dropout=0.0)
    return DecoderLM(cfg)
