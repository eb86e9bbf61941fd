"""The ranges of the numbers a user passes, checked before any work starts.

A number out of range used to surface deep inside torch, transformers or ONNX Runtime as a
traceback (``--seq-len 0``: a division by zero; ``--batch-size 0``: ``range()`` with step
0; a window longer than GPT-2's 1024 learned positions: an index error in the embedding;
``--threads 100000``: ONNX Runtime creating a hundred thousand threads) or as unbounded
memory. Each range here is the one documented in the command's ``--help``:

==========================  =========================================================
``--threads``               1 .. the number of CPUs of the machine
``--seq-len``               2 .. the model's position table (learned positions only)
``--batch-size``            >= 1 (compress, eval, eval-speech, translate)
``--beam``, ``--limit``     >= 1 (eval-speech, translate)
``--calib-tokens``          >= ``--seq-len``
``--temperature``           > 0 and finite (sampling)
``--top-k``                 1 .. the vocabulary
prompt + new tokens         <= the model's position table
``--reference`` / teacher   the same vocabulary as the model
==========================  =========================================================

No torch import here: ``generate`` on an ONNX export checks its threads without it.
"""

from __future__ import annotations

import math
import os

from .errors import LayershareError

ROPE_KEYS = ("rope_theta", "rope_parameters", "rope_scaling")


def at_least(name: str, value: int, low: int = 1) -> int:
    """``value`` if it is an integer >= ``low``."""
    if not isinstance(value, int) or value < low:
        raise LayershareError(f"{name} must be an integer >= {low}, got {value}")
    return value


def threads(value: int | None) -> int | None:
    """ONNX Runtime threads: None (its default) or 1 .. the CPUs of this machine."""
    if value is None:
        return None
    cpus = os.cpu_count() or 1
    if not isinstance(value, int) or not 1 <= value <= cpus:
        raise LayershareError(f"--threads must lie in 1..{cpus} (the CPUs of this machine), "
                              f"got {value}")
    return value


def sampling(temperature: float, top_k: int | None, vocab: int | None = None) -> None:
    """Sampling arguments: a positive finite temperature, a top-k within the vocabulary."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise LayershareError(f"--temperature must be a positive finite number, got {temperature}")
    if top_k is not None and (top_k < 1 or (vocab is not None and top_k > vocab)):
        limit = f"1..{vocab}" if vocab is not None else ">= 1"
        raise LayershareError(f"--top-k must lie in {limit} (the vocabulary), got {top_k}")


def position_limit(model) -> int | None:
    """The longest sequence ``model`` can read: the size of its learned position table
    (GPT-2's ``n_positions``, BERT's ``max_position_embeddings``, the reference DecoderLM's
    ``max_len``); None for rotary or relative positions, which have no table to run off."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    if getattr(config, "pos", None) is not None:  # layershare's reference models
        return getattr(config, "max_len", None) if config.pos == "learned" else None
    if any(getattr(config, key, None) is not None for key in ROPE_KEYS):
        return None
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fits_positions(model, length: int, what: str) -> None:
    """Refuse ``length`` tokens for a model whose position table is shorter."""
    limit = position_limit(model)
    if limit is not None and length > limit:
        raise LayershareError(f"{what} is {length} tokens, longer than the model's {limit} "
                              "positions")


def vocab_size(model) -> int | None:
    """Rows of the model's input embedding (None if it has none)."""
    get = getattr(model, "get_input_embeddings", None)
    if not callable(get):  # layershare's own models (models/) size their table by the config
        return getattr(getattr(model, "config", None), "vocab_size", None)
    return getattr(get(), "num_embeddings", None)


def same_vocab(model, other, what: str) -> None:
    """``other`` (a reference or teacher) must read and predict the same tokens."""
    mine, theirs = vocab_size(model), vocab_size(other)
    if mine is not None and theirs is not None and mine != theirs:
        raise LayershareError(f"{what} has a vocabulary of {theirs:,} tokens, the model "
                              f"{mine:,}: compare models that share a tokenizer")


def tokens_fit(model, windows, what: str) -> None:
    """Every token id of ``windows`` (a tensor) must be a row of the model's embedding."""
    size = vocab_size(model)
    if size is not None and windows.numel() and int(windows.max()) >= size:
        raise LayershareError(f"{what}: the tokenizer gives id {int(windows.max())}, the model "
                              f"has {size:,} tokens; use the model's own tokenizer")
