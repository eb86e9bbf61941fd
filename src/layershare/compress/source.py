"""Compressing a model named by path or short name, calibrated on data named the same way.

    import layershare
    result = layershare.compress("smollm2-135m", calib="brown", method="lowrank", keep=0.6)
    result = layershare.compress("whisper-tiny-en", calib="espeak-en", method="residual",
                                 keep=0.34, stacks="encoder", calib_tokens=96000)

What ``layershare compress SRC --data NAME|FILE`` does, as one call: the model is opened layer
by layer where its files allow (formats/lazy.py: one block of dense weights in memory at a
time), otherwise whole (GGUF, de-quantised by transformers); the calibration batches are built
from a data name or a text file (docs/cli.md, "Naming data"):

* text models: ``brown`` (its valid split, the default) or a UTF-8 text file, cut into
  ``calib_tokens / seq_len`` windows of the model's own tokenizer, read only as far as needed;
* Whisper: ``espeak-en`` (its train split, the default): log-mel features of utterances
  spread evenly over the split, ``calib_tokens`` counted in encoder frames (compress/speech.py);
* ``none``: the data-free fit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .. import limits
from ..errors import LayershareError
from .fit import compress_model
from .options import check_options
from .result import CompressResult


def text_batches(tokenizer, source: str, tokens: int, seq_len: int,
                 batch_size: int) -> list[dict]:
    """Windows of calibration text as model-input batches (a recipe name: its valid split)."""
    from ..data.windows import read_text, token_windows

    if tokens < seq_len:
        raise LayershareError(f"--calib-tokens ({tokens}) must be at least --seq-len ({seq_len})")
    lines = read_text(source, "valid")
    windows = token_windows(tokenizer, lines, seq_len, math.ceil(tokens / seq_len),
                            what=f"calibration text {source}")
    return [{"input_ids": windows[i:i + batch_size]} for i in range(0, len(windows), batch_size)]


def calibration(model, src: str | os.PathLike, data: str | None = None, tokens: int = 16384,
                seq_len: int = 256, batch_size: int = 8, data_dir: str | os.PathLike | None = None,
                stacks: str = "all") -> tuple[list[dict] | None, str]:
    """Calibration batches for ``model`` (read from ``src``) and a one-line description of
    them; ``(None, "none")`` for the data-free fit. ``data`` defaults to ``brown`` for text
    models and ``espeak-en`` for Whisper."""
    from ..formats.hub import auto_tokenizer
    from ..formats.pretrained import resolve
    from .speech import SPEECH_CALIB, is_speech_model, speech_batches, train_utterances

    limits.at_least("--seq-len", seq_len, 2)
    limits.at_least("--batch-size", batch_size)
    limits.at_least("--calib-tokens", tokens)
    speech = is_speech_model(model)
    source = data or ("espeak-en" if speech else "brown")
    if source == "none":
        return None, "none"
    if speech:  # the decoder's stack needs teacher-forced transcripts, hence the tokenizer
        from ..formats import whisper
        tokenizer = whisper.tokenizer(resolve(src)) if stacks != "encoder" else None
        batches = speech_batches(model, train_utterances(source, data_dir and Path(data_dir)),
                                 tokens, batch_size, tokenizer)
        clips = sum(len(b["input_features"]) for b in batches)
        frames = sum(b["input_features"].shape[0] * b["input_features"].shape[-1] // 2
                     for b in batches)
        return batches, f"{clips} utterances of {source} train, {frames:,} encoder frames"
    if source in SPEECH_CALIB:
        raise LayershareError(f"--calib {source} is speech; {type(model).__name__} reads "
                              "text: calibrate on brown or a text file")
    limits.fits_positions(model, seq_len, "--seq-len")
    batches = text_batches(auto_tokenizer(src), source, tokens, seq_len, batch_size)
    limits.tokens_fit(model, batches[0]["input_ids"], f"calibration text {source}")
    windows = sum(len(b["input_ids"]) for b in batches)
    return batches, f"{windows * seq_len:,} tokens of {source}"


def compress_source(src: str | os.PathLike, calib: str | None = None, calib_tokens: int = 16384,
                    seq_len: int = 256, batch_size: int = 8,
                    data_dir: str | os.PathLike | None = None, progress: bool = True,
                    **options) -> CompressResult:
    """Open ``src`` (a transformers directory, a ``.gguf`` file or a short name), build its
    calibration from ``calib`` (a data name, a text file, ``"none"`` for the data-free fit;
    None: the model's default data, brown or espeak-en) and compress it; ``options`` are
    :func:`~layershare.compress.fit.compress_model`'s. The result's ``calib_description``
    says what the fit saw.

    Reading layer by layer, it asks glibc to return freed large blocks to the system for
    the rest of the process (``formats.lazy.release_large_frees``), so that each dense
    block's memory really goes once it is compressed."""
    from ..formats.hub import from_local
    from ..formats.lazy import LazyModel, can_open_lazily, release_large_frees
    from ..formats.pretrained import resolve

    limits.at_least("--seq-len", seq_len, 2)  # every option checked before any work
    limits.at_least("--batch-size", batch_size)
    limits.at_least("--calib-tokens", calib_tokens)
    check_options(**{k: v for k, v in options.items() if k not in ("sequential", "materialize")})
    lazy = None
    if can_open_lazily(resolve(src)):  # layer by layer: one block of dense weights at a time
        release_large_frees()  # freed layers go back to the system (formats/lazy.py)
        lazy = LazyModel(resolve(src))
        model = lazy.model
    else:  # GGUF (de-quantised by transformers as a whole) and other formats
        model = from_local(src)
    batches, description = calibration(model, src, calib, calib_tokens, seq_len, batch_size,
                                       data_dir, options.get("stacks", "all"))
    result = compress_model(model, batches, progress=progress,
                            materialize=lazy.materialize if lazy else None, **options)
    if lazy is not None:
        lazy.finish()
    result.calib_description = description
    return result
