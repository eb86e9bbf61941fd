"""The ``text`` and ``parallel`` recipes: the user's own files, split by the user.

A config maps each split to files::

    {"train": "lm/train.txt", "valid": "lm/valid.txt", "test": "lm/test.txt"}
    {"train": ["mt/train.de", "mt/train.en"], "valid": {"src": "v.de", "tgt": "v.en"}, ...}

Nothing is fetched or rewritten; we only check what would otherwise fail late and
confusingly in a training run: every split named, every file present and UTF-8, and the
two sides of a parallel split equally long (a one-line shift silently ruins translation
training). Lines are split on ``\\n`` only, so a stray U+2028 cannot misalign two sides.
Blank lines are skipped (for parallel: pairs whose two sides are both blank).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..errors import LayershareError
from .split import SPLITS

ALLOWED_EXTRA = {"recipe", "name"}  # a config may say which recipe it is for


def _check_keys(cfg, recipe: str) -> None:
    if not isinstance(cfg, Mapping):
        raise LayershareError(f"{recipe} recipe: expected a mapping with keys "
                              f"{', '.join(SPLITS)}, got {type(cfg).__name__}")
    missing = [s for s in SPLITS if s not in cfg]
    unknown = sorted(set(cfg) - set(SPLITS) - ALLOWED_EXTRA)
    if missing or unknown:
        bits = ([f"missing {', '.join(missing)}"] if missing else []) + \
               ([f"unknown key(s) {', '.join(map(str, unknown))}"] if unknown else [])
        raise LayershareError(f"{recipe} recipe: {'; '.join(bits)} "
                              f"(expected exactly {', '.join(SPLITS)})")


def _path(value, base_dir: Path | None, where: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise LayershareError(f"{where}: expected a file path, got {value!r}")
    path = Path(value).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise LayershareError(f"{where}: file {path} does not exist")
    return path


def read_user_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file (``\\n`` or ``\\r\\n``), without their line ends."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise LayershareError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise LayershareError(f"cannot read {path}: {exc}") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def iter_user_lines(path: Path, piece: int = 1 << 20):
    """Lines of a UTF-8 file as :func:`read_user_lines` gives them, read one at a time, so a
    caller that stops early never holds more of the file than it used. A line longer than
    ``piece`` characters comes in pieces of ``piece`` (memory stays bounded for a file
    without line ends). The file must be a regular file (a FIFO or device is refused)."""
    from ..paths import regular_file

    path = regular_file(path, "text file")
    number = 0
    try:
        with open(path, encoding="utf-8", newline="\n") as f:  # "\n" ends a line, as above
            while True:
                number += 1
                line = f.readline(piece)
                if not line:
                    return
                if line.endswith("\n"):
                    line = line[:-1]
                else:
                    number -= 1  # a piece of a longer line, or the last line
                yield line[:-1] if line.endswith("\r") else line
    except UnicodeDecodeError as exc:
        raise LayershareError(f"{path}:{number}: not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise LayershareError(f"cannot read {path}: {exc}") from None


def load_text_splits(cfg: Mapping, base_dir: Path | None = None) -> dict[str, list[str]]:
    """Non-blank lines per split from ``{"train": path, "valid": path, "test": path}``.

    Relative paths are taken from ``base_dir`` (e.g. the config file's folder) when given.
    """
    _check_keys(cfg, "text")
    out = {}
    for split in SPLITS:
        path = _path(cfg[split], base_dir, f"text recipe, {split}")
        out[split] = [ln for ln in read_user_lines(path) if ln.strip()]
        if not out[split]:
            raise LayershareError(f"text recipe, {split}: {path} has no non-blank line")
    return out


def _pair_paths(value, base_dir: Path | None, split: str) -> tuple[Path, Path]:
    where = f"parallel recipe, {split}"
    if isinstance(value, Mapping):
        if set(value) != {"src", "tgt"}:
            raise LayershareError(f"{where}: expected keys src and tgt, got "
                                  f"{', '.join(map(str, value)) or 'none'}")
        src, tgt = value["src"], value["tgt"]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        src, tgt = value
    else:
        raise LayershareError(f"{where}: expected [src, tgt] or {{src: ..., tgt: ...}}, "
                              f"got {value!r}")
    return _path(src, base_dir, f"{where} src"), _path(tgt, base_dir, f"{where} tgt")


def load_parallel_splits(cfg: Mapping, base_dir: Path | None = None
                         ) -> dict[str, list[tuple[str, str]]]:
    """``(src, tgt)`` pairs per split; each split is ``[src, tgt]`` or ``{src:, tgt:}``."""
    _check_keys(cfg, "parallel")
    out = {}
    for split in SPLITS:
        src_path, tgt_path = _pair_paths(cfg[split], base_dir, split)
        src, tgt = read_user_lines(src_path), read_user_lines(tgt_path)
        if len(src) != len(tgt):
            raise LayershareError(f"parallel recipe, {split}: {src_path} has {len(src)} lines "
                                  f"but {tgt_path} has {len(tgt)}; the two sides must align")
        out[split] = [(s, t) for s, t in zip(src, tgt) if s.strip() or t.strip()]
        if not out[split]:
            raise LayershareError(f"parallel recipe, {split}: {src_path} has no non-blank line")
    return out
