"""The loader gate: the one place that decides whether a model's files may be read.

Every verb that reads a model -- a transformers directory (single or sharded safetensors),
a ``.gguf`` file, a CTranslate2 directory, an ONNX export, a layershare checkpoint -- goes
through :func:`admit` before anything else opens a file, and opens each file by a path
that :func:`file_inside` returned. The rules, and why:

* **No custom code.** A ``config.json`` with ``auto_map`` names Python files of the model
  directory for transformers to import; layershare never runs them
  (:func:`check_config`). Every transformers call passes ``trust_remote_code=False``
  (:data:`NO_REMOTE_CODE`) and runs inside :func:`no_prompt`, under which ``sys.stdin`` is
  an empty stream: transformers, left to decide alone, would ask on stdout whether to run
  the code and read the answer from stdin -- a ``y`` piped in would import it.
* **Nothing outside the named directory.** Each file opened is resolved (symlinks
  followed) and must lie inside the resolved directory and be a regular file: a sharded
  index's ``../x`` or absolute entry, a symlink to ``/etc/passwd``, ``/dev/urandom`` (read
  forever) or a FIFO (blocks forever) is one line, never opened. ``os.stat`` of the
  resolved path decides, so a FIFO is refused without being opened (these two helpers,
  :func:`file_inside` and :func:`regular_file`, live in layershare/paths.py, which other
  packages use without importing ``formats``).
  Not only the files layershare names: transformers opens whatever a directory holds that
  it knows (shards of a ``.bin`` index, ``chat_template.jinja``, ``additional_chat_templates/``),
  so every entry of the directory and of its subdirectories must be a regular file or a
  directory inside it (:func:`_whole_directory`), and the file names a
  ``tokenizer_config.json`` gives (``fast_tokenizer_files``, ``*_file``) must be files inside
  it too (:func:`_tokenizer_config`). A ``.gguf`` file is loaded from a private directory
  that holds it alone (formats/hub.py), so nothing beside it is read.
* **Declared sizes are checked before allocation** by the readers: safetensors validates
  its own header against the file size (formats/lazy.py uses it), the CTranslate2 and GGUF
  readers check every count against the bytes left.

This module imports neither torch nor transformers (ONNX Runtime generation goes through it
without paying for them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import LayershareError, first_line
from ..paths import file_inside, regular_file

__all__ = ["NO_REMOTE_CODE", "admit", "check_config", "file_inside", "no_prompt", "read_json",
           "regular_file", "safetensors_files"]

NO_REMOTE_CODE = {"trust_remote_code": False}
INDEX, SINGLE = "model.safetensors.index.json", "model.safetensors"
# Files a model directory may carry beside its weights, read by transformers or tokenizers.
SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
              "tokenizer.model", "added_tokens.json", "preprocessor_config.json",
              "pytorch_model.bin", SINGLE, INDEX)


def read_json(directory: str | os.PathLike, name: str, what: str | None = None) -> dict:
    """A JSON object file of ``directory`` (checked by :func:`file_inside`)."""
    path = file_inside(directory, name, what or name)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LayershareError(f"{Path(directory) / name}: cannot be read "
                              f"({first_line(exc)})") from None
    if not isinstance(value, dict):
        raise LayershareError(f"{Path(directory) / name}: expected a JSON object, got "
                              f"{type(value).__name__}")
    return value


# Head counts a model divides its width by: 0 (or a negative or non-integer count) would be a
# ZeroDivisionError deep inside the model's constructor.
HEAD_KEYS = ("n_head", "num_attention_heads", "num_key_value_heads", "encoder_attention_heads",
             "decoder_attention_heads", "num_heads", "n_heads")


def check_config(directory: str | os.PathLike, name: str = "config.json") -> dict:
    """The model's ``config.json``; refused if it asks for custom code (``auto_map``) or
    declares a head count that is not a positive integer."""
    config = read_json(directory, name)
    where = Path(directory) / name
    if "auto_map" in config:
        raise LayershareError(f"{where}: the model needs its own code (auto_map), which "
                              "layershare never runs; use a model of a transformers class")
    for key in HEAD_KEYS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise LayershareError(f"{where}: {key} must be a positive integer, got {value!r}")
    return config


def safetensors_files(directory: str | os.PathLike) -> list[Path]:
    """The weight files of a safetensors model directory (the single file, or every file
    its sharded index names), each checked by :func:`file_inside`."""
    directory = Path(directory)
    if (directory / SINGLE).exists() or (directory / SINGLE).is_symlink():
        return [file_inside(directory, SINGLE, "weights")]
    index = read_json(directory, INDEX)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in weight_map.items()):
        raise LayershareError(f"{directory / INDEX}: weight_map is not a table of tensor names "
                              "to file names")
    return [file_inside(directory, name, "weights file")
            for name in sorted(set(weight_map.values()))]


def admit(src: str | os.PathLike, tokenizer_only: bool = False) -> str:
    """Decide whether ``src`` may be read, and what it is: ``"gguf"``, ``"ctranslate2"``,
    ``"onnx"``, ``"layershare"``, ``"transformers"`` -- or, with ``tokenizer_only``, also
    ``"tokenizer"``: a directory of tokenizer files without a model's ``config.json``
    (``generate --tokenizer DIR``). Raises one :class:`LayershareError` for anything
    refused (see the module docstring)."""
    path = Path(src)
    if not path.exists() and not path.is_symlink():
        raise LayershareError(f"{path}: no such file or directory")
    if not path.is_dir():
        regular_file(path, "model file")
        if path.suffix != ".gguf":
            raise LayershareError(f"{path}: expected a model directory or a .gguf file")
        return "gguf"
    if (path / "model.bin").exists() and not is_transformers_config(path):
        file_inside(path, "model.bin", "CTranslate2 weights")
        _side_files(path)
        return "ctranslate2"
    if (path / "onnx.json").exists():
        read_json(path, "onnx.json")
        file_inside(path, "model.onnx", "ONNX graph")
        _side_files(path)
        return "onnx"
    if (path / "layershare.json").exists():
        file_inside(path, "layershare.json", "checkpoint description")
        if (path / "config.json").exists():
            check_config(path)
        _side_files(path)
        return "layershare"
    if not (path / "config.json").exists() and not (path / "config.json").is_symlink():
        if tokenizer_only:
            _side_files(path)
            return "tokenizer"
        raise LayershareError(f"{path}: not a transformers model directory (no config.json)")
    check_config(path)
    if (path / SINGLE).exists() or (path / INDEX).exists():
        safetensors_files(path)
    _side_files(path)
    return "transformers"


def is_transformers_config(path: Path) -> bool:
    """A ``config.json`` with ``model_type`` marks a transformers directory (a CTranslate2
    directory's config.json has none)."""
    if not ((path / "config.json").exists() or (path / "config.json").is_symlink()):
        return False
    config_path = file_inside(path, "config.json")  # a FIFO is refused, never opened
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "model_type" in config


def _side_files(path: Path) -> None:
    """Every known file present in ``path`` must be a regular file inside it, and so must
    everything else it holds (:func:`_whole_directory`) and every file its
    ``tokenizer_config.json`` names."""
    for name in SIDE_FILES:
        if (path / name).exists() or (path / name).is_symlink():
            file_inside(path, name)
    _whole_directory(path)
    _tokenizer_config(path)


MAX_ENTRIES = 100_000  # a model directory holds tens of files; past this, refuse to guess


def _whole_directory(path: Path) -> None:
    """Every entry below ``path`` (hidden ones apart: ``.git``, ``.cache``, which no loader
    reads) is a regular file or a directory, and resolves inside ``path``: a loader that
    globs the directory (transformers' shards, chat templates) then finds nothing that
    leads out of it or blocks."""
    base = path.resolve()
    count = 0
    for root, dirs, files in os.walk(path):  # does not descend into symlinked directories
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in [d for d in dirs if (Path(root) / d).is_symlink()] + [
                f for f in files if not f.startswith(".")]:
            count += 1
            if count > MAX_ENTRIES:
                raise LayershareError(f"{path}: more than {MAX_ENTRIES:,} files; not a model "
                                      "directory")
            entry = Path(root) / name
            target = entry.resolve()
            if target != base and base not in target.parents:
                raise LayershareError(f"{path}: {entry.relative_to(path)} leads outside the "
                                      f"directory ({target}); refused")
            if not target.is_dir():
                file_inside(path, entry.relative_to(path))


def _tokenizer_config(path: Path) -> None:
    """The files a ``tokenizer_config.json`` names (``fast_tokenizer_files``, any
    ``*_file``/``*_files`` key), which transformers joins to the directory unchecked: each
    must be a regular file inside ``path``."""
    if not (path / "tokenizer_config.json").is_file():
        return
    config = read_json(path, "tokenizer_config.json")
    for key, value in config.items():
        if not (key.endswith(("_file", "_files")) and value is not None):
            continue
        names = value if isinstance(value, list) else [value]
        for name in names:
            if not isinstance(name, str):
                raise LayershareError(f"{path / 'tokenizer_config.json'}: {key} must name "
                                      f"files, got {name!r}")
            file_inside(path, name, f"tokenizer_config.json {key}")


@contextlib.contextmanager
def no_prompt():
    """Run a transformers call with an empty ``sys.stdin``: a prompt it might print gets
    end-of-file (transformers then refuses), never a line the user or a pipe typed."""
    saved = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        yield
    finally:
        sys.stdin = saved


@dataclass(frozen=True)
class Source:
    """What a path named on the command line is (:func:`what_is`).

    ``kind``: ``run`` (a ``layershare train`` / ``distill`` directory), ``layershare`` (a
    checkpoint), ``onnx`` (an export), ``transformers``, ``gguf`` or ``ctranslate2``. ``path``:
    the path (a short name's installed location); ``model``: where its weights are (a run's
    ``model/`` checkpoint, else ``path``)."""

    kind: str
    path: Path
    model: Path


def is_run_directory(path: Path) -> bool:
    """A training or distillation run: its saved config and its compact model beside it."""
    return path.is_dir() and (path / "config.yaml").is_file() and (path / "model").is_dir()


def what_is(src: str | os.PathLike) -> Source:
    """The one answer to "what is this path?" for every verb: a short name is resolved to its
    installed files (formats/pretrained.py), a run directory is recognised by its
    ``config.yaml`` and ``model/``, anything else goes through :func:`admit` (which refuses,
    in one line, what may not be read)."""
    from .pretrained import resolve

    path = resolve(src)
    if is_run_directory(path):
        admit(path / "model")
        return Source("run", path, path / "model")
    return Source(admit(path), path, path)
