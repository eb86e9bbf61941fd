"""Paths a user's file names may resolve to: regular files, inside the directory they name.

The rules of the loader gate (formats/gate.py) that other packages need too -- a text file
for calibration (data/local.py), a sharded checkpoint's shard (train/sharded_meta.py) --
live here, with no dependencies, so that no package has to import ``formats`` for them.
``os.stat`` of the resolved path decides, so a FIFO or device is refused without being
opened (opening a FIFO blocks; reading ``/dev/urandom`` never ends).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import LayershareError


def file_inside(directory: str | os.PathLike, name: str | os.PathLike, what: str = "file") -> Path:
    """``directory/name`` resolved: a regular file inside the resolved ``directory``, else
    one :class:`LayershareError` (nothing is opened to decide)."""
    base = Path(directory).resolve()
    text = os.fspath(name)
    if os.path.isabs(text):
        raise LayershareError(f"{directory}: {what} {text!r} is an absolute path; layershare "
                              "reads only files inside the model's directory")
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise LayershareError(f"{directory}: {what} {text!r} lies outside the directory "
                              f"({target}); refused")
    return _regular(target, f"{directory}: {what} {text!r}")


def regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` resolved, if it is a regular file (not a FIFO, device or directory)."""
    return _regular(Path(path).resolve(), f"{what} {os.fspath(path)!r}")


def _regular(target: Path, where: str) -> Path:
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        raise LayershareError(f"{where}: no such file") from None
    except OSError as exc:
        raise LayershareError(f"{where}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise LayershareError(f"{where} is not a regular file (a device, FIFO or directory); "
                              "refused")
    return target
