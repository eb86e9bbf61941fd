"""Tiny reference models and the sharing variants the model tests run over."""

import torch

import layershare
from layershare.models import (
    DecoderLM,
    DecoderLMConfig,
    EncoderClassifier,
    EncoderClassifierConfig,
    Seq2Seq,
    Seq2SeqConfig,
)

VOCAB = 24
SMALL = dict(vocab_size=VOCAB, d_model=32, n_heads=4, d_ff=48, max_len=48, dropout=0.0)

# (name, method, strategy): dense, every method with adjacent groups, and cycle, where the
# same shared weights occur at two non-adjacent positions (layers 0 and 2, 1 and 3).
VARIANTS = [("dense", None, None)] + [
    (f"{m}-{s}", m, s) for s in ("sequence", "cycle") for m in ("residual", "lowrank", "tied")]


def lm(pos="learned", **kw):
    return DecoderLM(DecoderLMConfig(**{**SMALL, "n_layers": 4, "pos": pos, **kw}))


def seq2seq(pos="learned", **kw):
    return Seq2Seq(Seq2SeqConfig(**{**SMALL, "encoder_layers": 4, "decoder_layers": 4,
                                    "pos": pos, **kw}))


def classifier(pos="learned", **kw):
    return EncoderClassifier(EncoderClassifierConfig(**{**SMALL, "n_layers": 4, "pos": pos, **kw}))


@torch.no_grad()
def sharpen(model, std=0.3, seed=0):
    """Re-draw every weight matrix with a larger spread: GPT-2's 0.02 gives near-uniform
    next-token distributions, under which greedy and beam search hardly differ."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@torch.no_grad()
def make_variant(model, method, strategy, noise=0.05, seed=1):
    """``model`` converted (from scratch) by ``method``/``strategy``, then every unique tensor
    perturbed so that the layers of a group differ (scratch starts them equal)."""
    if method is not None:
        layershare.convert(model, method=method, group_size=2, rank=4, strategy=strategy,
                           init="scratch")
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():  # each shared tensor once
        p.add_(torch.randn(p.shape, generator=g) * noise)
    return model.eval()


def ids(batch, length, seed=0, low=3):
    """Random token ids avoiding pad (0), bos (1) and eos (2)."""
    return torch.randint(low, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))
