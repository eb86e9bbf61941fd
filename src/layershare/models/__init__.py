"""The project's reference models, built so that every sharing plan converts them.

* :class:`DecoderLM` -- decoder-only LM with tied embeddings, KV-cached ``generate``;
* :class:`Seq2Seq` -- encoder-decoder for translation, joint embeddings, greedy/beam ``translate``;
* :class:`EncoderClassifier` -- encoder, mean or first-token pooling, linear head;
* :class:`SpeechEncoder` -- log-mel frames, 4x convolutional subsampling, encoder, CTC head.

Each class lists its layer stacks in ``layershare_stacks`` (what ``layershare.convert``
rewrites) and describes itself through ``layershare_base()``, from which :func:`build_model`
rebuilds an untrained copy when ``layershare.load`` reads a checkpoint.
"""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from ..errors import LayershareError
from .blocks import KVCache, TransformerConfig
from .classifier import EncoderClassifier, EncoderClassifierConfig
from .decoder_lm import DecoderLM, DecoderLMConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .speech import SpeechEncoder, SpeechEncoderConfig

MODELS = {"DecoderLM": (DecoderLM, DecoderLMConfig), "Seq2Seq": (Seq2Seq, Seq2SeqConfig),
          "EncoderClassifier": (EncoderClassifier, EncoderClassifierConfig),
          "SpeechEncoder": (SpeechEncoder, SpeechEncoderConfig)}


def build_model(base: dict) -> nn.Module:
    """An untrained model from ``{"class": name, "config": {field: value}}`` (the dict a
    model's ``layershare_base()`` returns; ``"library"``, if present, must be layershare)."""
    if not isinstance(base, dict) or base.get("library", "layershare") != "layershare":
        raise LayershareError(f"not a layershare model description: {base!r}")
    name, config = base.get("class"), base.get("config")
    if name not in MODELS:
        raise LayershareError(f"unknown layershare model class {name!r}; "
                              f"known: {', '.join(MODELS)}")
    cls, config_cls = MODELS[name]
    if not isinstance(config, dict):
        raise LayershareError(f"{name}: config must be a dict of fields, got {config!r}")
    unknown = set(config) - {f.name for f in fields(config_cls)}
    if unknown:
        raise LayershareError(f"{name}: unknown config fields {sorted(unknown)}")
    return cls(config_cls(**config))


__all__ = ["build_model", "MODELS", "DecoderLM", "DecoderLMConfig", "Seq2Seq", "Seq2SeqConfig",
           "EncoderClassifier", "EncoderClassifierConfig", "SpeechEncoder", "SpeechEncoderConfig",
           "KVCache", "TransformerConfig"]
