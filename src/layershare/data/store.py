"""Prepared-data directories: a manifest of checksums and an all-or-nothing rename.

A recipe's directory ``DATA_DIR/NAME`` is *ready* only when its ``manifest.json`` names the
recipe and its version and every file it lists has the recorded size and sha256. The
manifest is written last, inside a hidden ``.NAME.partial-PID-XXXX`` directory that is renamed
into place only once complete, so a crash, a Ctrl-C or a full disk never leaves a directory
that looks ready. Checksums are re-verified on every ``prepare`` (a few hundred ms), which
also catches a split file edited or truncated by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import LayershareError
from ..paths import file_inside
from .fetch import sha256_file

MANIFEST = "manifest.json"
FORMAT = 1


def default_data_dir() -> Path:
    """``$LAYERSHARE_DATA`` when set, else ``./data`` (relative to the working directory)."""
    return Path(os.environ.get("LAYERSHARE_DATA") or "data")


def file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(directory: Path, recipe: str, version: int, source: dict,
                   counts: dict) -> dict:
    """Checksum every file already in ``directory`` and write ``manifest.json`` beside them.

    No timestamp goes in, so preparing twice gives byte-identical directories.
    """
    files = {p.name: file_entry(p) for p in sorted(directory.iterdir())
             if p.is_file() and p.name != MANIFEST}
    manifest = {"format": FORMAT, "recipe": recipe, "recipe_version": version,
                "source": source, "counts": counts, "files": files}
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (directory / MANIFEST).write_text(text, encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> dict:
    """The parsed manifest of a prepared directory, or a one-line error."""
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LayershareError(f"{directory} is not a prepared data directory (no {MANIFEST})")
    except (OSError, ValueError) as exc:
        raise LayershareError(f"{path} is unreadable ({exc}); delete the directory and "
                              "prepare it again") from exc


def check_ready(directory: Path, recipe: str, version: int) -> str | None:
    """``None`` when ``directory`` is a complete, verified preparation; else why it is not."""
    directory = Path(directory)
    if not directory.is_dir():
        return "not prepared yet"
    try:
        manifest = read_manifest(directory)
    except LayershareError as exc:
        return str(exc)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "manifest has an unknown format"
    if manifest.get("recipe") != recipe or manifest.get("recipe_version") != version:
        return (f"manifest is for {manifest.get('recipe')} v{manifest.get('recipe_version')}, "
                f"not {recipe} v{version}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "manifest lists no files"
    for name, entry in files.items():
        if not isinstance(name, str) or name != Path(name).name or name in (".", ".."):
            return f"manifest names {name!r}, not a file of the directory"  # e.g. ../x
        if not isinstance(entry, dict):
            return f"manifest entry of {name} is not a table of bytes and sha256"
        if not ((directory / name).exists() or (directory / name).is_symlink()):
            return f"{name} is missing"
        try:  # a link out of the directory, a FIFO: never opened
            path = file_inside(directory, name, "data file")
        except LayershareError as exc:
            return str(exc)
        if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            return f"{name} does not match its checksum in the manifest"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_partials(data_dir: Path, name: str) -> list[Path]:
    """Delete ``.NAME.partial-PID-*`` left by processes that died; a live run's is kept."""
    removed = []
    for path in Path(data_dir).glob(f".{name}.partial-*"):
        try:
            pid = int(path.name.split("partial-", 1)[1].split("-", 1)[0])
        except ValueError:
            pid = -1
        if pid <= 0 or not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def new_partial(data_dir: Path, name: str) -> Path:
    """A fresh hidden build directory on the same filesystem as the final one."""
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f".{name}.partial-{os.getpid()}-", dir=data_dir))
        umask = os.umask(0o022)  # mkdtemp makes 0700; give the published dir the usual mode
        os.umask(umask)
        path.chmod(0o777 & ~umask)
        return path
    except OSError as exc:
        reason = f"{exc.strerror}: {exc.filename}" if exc.strerror else str(exc)
        raise LayershareError(f"cannot write to data directory {data_dir}: {reason}") from None


def publish(partial: Path, final: Path) -> None:
    """Move a complete build into place, replacing an invalid older directory if any.

    The old directory is first renamed aside (under a partial name, so a crash right then
    leaves it for :func:`remove_stale_partials`), so at every instant ``final`` is either the
    old directory, absent, or the new complete one.
    """
    aside = None
    if final.exists():
        aside = final.with_name(f".{final.name}.partial-{os.getpid()}-old")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(partial, final)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def write_lines(path: Path, lines) -> int:
    """Write one item per line (UTF-8, ``\\n``); a line break inside an item is a bug."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            if "\n" in line or "\r" in line:
                raise AssertionError(f"line break inside an item written to {path.name}")
            fh.write(line + "\n")
            n += 1
    return n


def read_lines(path: Path) -> list[str]:
    """The lines of a prepared file, without their line ends."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def read_pairs(directory: Path, left: str, right: str) -> list[tuple[str, str]]:
    """Line-aligned pairs from two prepared files (translation, summarisation), or a one-line
    error when their lengths differ (an edited or truncated file would misalign every pair)."""
    a, b = read_lines(Path(directory) / left), read_lines(Path(directory) / right)
    if len(a) != len(b):
        raise LayershareError(f"{directory}: {left} and {right} differ in length; prepare the "
                              "recipe again")
    return list(zip(a, b))
