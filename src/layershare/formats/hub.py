"""Loading and writing transformers models from local files only (never a hub).

``from_local(src)`` takes a transformers model directory (``config.json`` + weights), a
``.gguf`` file, a CTranslate2 Whisper directory (``model.bin``; formats/whisper.py) or a short
name of formats/pretrained.py (``smollm2-135m``, ``whisper-tiny-en``); the class comes from
``config.architectures`` and must be one of transformers' own (no ``trust_remote_code``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from torch import nn

from ..errors import LayershareError
from .pretrained import resolve
from .whisper import is_ctranslate2_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def quiet_transformers() -> None:
    """Errors only, no progress bars: the command line prints its own summary."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")


def from_local(src: str | os.PathLike) -> nn.Module:
    """The transformers model stored at ``src`` (directory, .gguf file, short name), in eval mode."""
    import transformers

    src = resolve(src)
    if not src.exists():
        raise LayershareError(f"{src}: no such file or directory")
    kwargs = {}
    if is_ctranslate2_dir(src):
        from .whisper import from_ctranslate2
        return from_ctranslate2(src)
    if src.is_file():
        if src.suffix != ".gguf":
            raise LayershareError(f"{src}: expected a transformers model directory or a .gguf file")
        src, kwargs = src.parent, {"gguf_file": src.name}
    elif not (src / "config.json").is_file():
        raise LayershareError(f"{src}: not a transformers model directory (no config.json)")
    try:
        config = transformers.AutoConfig.from_pretrained(src, **kwargs)
        names = getattr(config, "architectures", None) or []
        cls = getattr(transformers, names[0], None) if names else None
        if cls is None:
            cls = transformers.AutoModelForCausalLM if kwargs else transformers.AutoModel
        return cls.from_pretrained(src, **kwargs).eval()
    except (OSError, ValueError, KeyError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LayershareError(f"{src}: cannot load the model ({first})") from None


def tokenizer_files(directory: str | os.PathLike) -> dict[str, Path]:
    """The tokenizer files next to a model, to copy along with it."""
    directory = resolve(directory)
    directory = directory.parent if directory.is_file() else directory
    return {n: directory / n for n in TOKENIZER_FILES if (directory / n).is_file()}


def copy_files(files: dict[str, Path], directory: Path) -> None:
    for name, path in files.items():
        shutil.copy2(path, directory / name)


def auto_tokenizer(src: str | os.PathLike):
    """The transformers tokenizer of a model directory, .gguf file or short name."""
    import transformers

    src = resolve(src)
    kwargs = {}
    if is_ctranslate2_dir(src):
        from .whisper import tokenizer
        return tokenizer(src)
    if src.is_file():
        src, kwargs = src.parent, {"gguf_file": src.name}
    try:
        return transformers.AutoTokenizer.from_pretrained(src, **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LayershareError(f"{src}: cannot load its tokenizer ({first})") from None


def save_tokenizer(src: str | os.PathLike, directory: Path) -> None:
    """Put ``src``'s tokenizer into ``directory``: its files copied, or (GGUF, whose tokenizer
    lives inside the weights file) written out by transformers as tokenizer.json."""
    files = tokenizer_files(src)
    if files:
        copy_files(files, directory)
    elif resolve(src).suffix == ".gguf":
        auto_tokenizer(src).save_pretrained(directory)
