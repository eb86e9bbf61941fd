"""Loading and writing transformers models from local files only (never a hub).

``from_local(src)`` takes a transformers model directory (``config.json`` + weights), a
``.gguf`` file, a CTranslate2 Whisper directory (``model.bin``; formats/whisper.py) or a short
name of formats/pretrained.py (``smollm2-135m``, ``whisper-tiny-en``); the class comes from
``config.architectures`` and must be one of transformers' own (no ``trust_remote_code``).
What may be read at all is decided first by the loader gate (formats/gate.py: no custom
code, no prompt, no file outside the directory), a GGUF header by formats/gguf_check.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LayershareError, first_line
from .gate import NO_REMOTE_CODE, admit, file_inside, no_prompt, regular_file
from .pretrained import resolve

if TYPE_CHECKING:  # torch is imported where a model is loaded, not to read a tokenizer
    from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def quiet_transformers() -> None:
    """Errors only, no progress bars: the command line prints its own summary.

    Through the environment when transformers is not imported yet (so that a command that
    never needs it -- ``generate --runtime onnx`` -- does not pay for importing it)."""
    import sys

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")


@contextlib.contextmanager
def gguf_alone(src: Path):
    """``(directory, {"gguf_file": name})`` for transformers to load the checked ``.gguf``
    file ``src`` from: a private temporary directory holding a link to it alone, so that
    transformers, which reads a ``tokenizer_config.json`` or ``generation_config.json`` it
    finds beside the file, reads nothing the user did not name."""
    from .gguf_check import check_gguf

    check_gguf(src)
    with tempfile.TemporaryDirectory(prefix="layershare-gguf-") as alone:
        (Path(alone) / src.name).symlink_to(regular_file(src, "model file"))
        yield Path(alone), {"gguf_file": src.name}


@contextlib.contextmanager
def load_place(src: Path, kind: str):
    """``(directory, kwargs)`` for transformers' ``from_pretrained``: ``src`` itself, or for
    a ``.gguf`` file its private directory (:func:`gguf_alone`); never remote code."""
    if kind != "gguf":
        yield src, dict(NO_REMOTE_CODE)
        return
    with gguf_alone(src) as (where, gguf):
        yield where, {**NO_REMOTE_CODE, **gguf}


def from_local(src: str | os.PathLike) -> nn.Module:
    """The transformers model stored at ``src`` (directory, .gguf file, short name), in eval
    mode. The loader gate (formats/gate.py) decides first whether it may be read."""
    src = resolve(src)
    kind = admit(src)
    if kind == "ctranslate2":
        from .whisper import from_ctranslate2
        return from_ctranslate2(src)
    if kind not in ("transformers", "gguf"):
        raise LayershareError(f"{src}: expected a transformers model directory or a .gguf file, "
                              f"found a {kind} {'export' if kind == 'onnx' else 'checkpoint'}")
    with load_place(src, kind) as (where, kwargs):
        return _from_pretrained(src, where, kwargs)


def _from_pretrained(src: Path, where: Path, kwargs: dict) -> nn.Module:
    """transformers' model class of ``where``'s config (one of its own), loaded from it."""
    import transformers

    try:
        with no_prompt():
            config = transformers.AutoConfig.from_pretrained(where, **kwargs)
            names = getattr(config, "architectures", None) or []
            cls = getattr(transformers, names[0], None) if names else None
            if cls is None:
                cls = (transformers.AutoModelForCausalLM if "gguf_file" in kwargs
                       else transformers.AutoModel)
            elif not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)
                      and isinstance(config, cls.config_class)):
                raise LayershareError(f"{src}: config.json names architecture {names[0]!r}, "
                                      f"which is not a transformers model class for a "
                                      f"{type(config).__name__}")
            return cls.from_pretrained(where, **kwargs).eval()
    except LayershareError:
        raise
    except LOAD_ERRORS as exc:
        raise LayershareError(f"{src}: cannot load the model ({first_line(exc)})") from None


def _load_errors() -> tuple[type[BaseException], ...]:
    """What transformers raises for files it cannot load (not for bugs): missing or
    unreadable files, bad JSON or values, weights-only unpickling refused, truncated
    safetensors, shapes that do not fit (a RuntimeError), a config field of the wrong type."""
    from pickle import UnpicklingError
    from struct import error as StructError

    from safetensors import SafetensorError
    kinds = [OSError, ValueError, KeyError, ImportError, UnpicklingError, SafetensorError,
             RuntimeError, EOFError, StructError]
    try:
        from huggingface_hub.errors import StrictDataclassError
        kinds.append(StrictDataclassError)
    except ImportError:
        pass
    return tuple(kinds)


LOAD_ERRORS = _load_errors()


def tokenizer_files(directory: str | os.PathLike) -> dict[str, Path]:
    """The tokenizer files of a model directory, to copy along with it (each a regular file
    inside it, else one line); none for a ``.gguf`` file, whose tokenizer is inside it."""
    directory = resolve(directory)
    if not directory.is_dir():
        return {}
    return {n: file_inside(directory, n, "tokenizer file") for n in TOKENIZER_FILES
            if (directory / n).exists() or (directory / n).is_symlink()}


def copy_files(files: dict[str, Path], directory: Path) -> None:
    for name, path in files.items():
        shutil.copy2(path, directory / name)


def auto_tokenizer(src: str | os.PathLike):
    """The transformers tokenizer of a model directory, .gguf file or short name."""
    import transformers

    src = resolve(src)
    kind = admit(src, tokenizer_only=True)
    if kind == "ctranslate2":
        from .whisper import tokenizer
        return tokenizer(src)
    try:
        with load_place(src, kind) as (where, kwargs), no_prompt():
            return transformers.AutoTokenizer.from_pretrained(where, **kwargs)
    except LOAD_ERRORS as exc:
        first = first_line(exc)
        raise LayershareError(f"{src}: cannot load its tokenizer ({first})") from None


def save_tokenizer(src: str | os.PathLike, directory: Path) -> None:
    """Put ``src``'s tokenizer into ``directory``: its files copied, or (GGUF, whose tokenizer
    lives inside the weights file) written out by transformers as tokenizer.json."""
    files = tokenizer_files(src)
    if files:
        copy_files(files, directory)
    elif resolve(src).suffix == ".gguf":
        auto_tokenizer(src).save_pretrained(directory)
