"""Where layershare writes: one output policy for every command and API that writes.

Nothing a user had is ever lost, and nothing is left half-written. Every writer
(``convert``, ``compress``, ``merge``, ``train``, ``distill``, ``export``, ``save``, data
recipes) follows the same three steps::

    from layershare.outputs import check_out, atomic_directory

    out = check_out(args.out, "checkpoint", sources=[args.src], overwrite=args.overwrite)
    ...                                   # the work: load, convert, fit ...
    atomic_directory(out, write)          # write(tmp) fills a temporary sibling of ``out``

1. :func:`check_out` before any work (and before anything is written) refuses, with one
   line (:class:`LayershareError`, exit status 2 on the command line), an output that is
   empty (``--out ""``), a file or a symbolic link, equal to a source, inside a source or
   holding a source, or a non-empty directory that is not an earlier output of the same
   *kind* (:data:`KINDS`). An earlier output of the same kind is replaced (``convert``
   re-run) or resumed (``train``); a layershare output of another kind needs
   ``overwrite=True`` (``--overwrite``); a directory layershare did not write is never
   replaced: the message says what is in it and to choose another path.
2. :func:`atomic_directory` builds the output in ``.NAME.tmp-PID-XXXX`` beside the target
   (same file system, so the final rename is atomic), removes it on any error, and renames
   it into place; an old output is first renamed to ``.NAME.old-PID`` and deleted after.
   Stale siblings of a killed run (dead PID) are removed -- or, for an ``.old`` whose
   replacement never arrived, put back -- by the next write to the same target. A full
   disk or a read-only target gives one line and leaves the target untouched.
3. Long-running writers into one directory (training runs) hold :func:`lock_directory`, an
   exclusive ``fcntl.flock`` for the whole run: a second run into it is refused.

Writers of a new kind add it to :data:`KINDS` (a description and how to recognise it) and,
if their files do not identify them, pass ``kind=`` to :func:`atomic_directory`, which then
leaves a small marker file (:data:`MARKER`) in the output.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

from .errors import LayershareError

MARKER = ".layershare-output"  # {"kind": ...} for outputs whose files do not say what they are
LOCK = "train.lock"


def _has(*names: str) -> Callable[[Path], bool]:
    return lambda d: all((d / n).exists() for n in names)


def _is_run(d: Path) -> bool:
    return (d / LOCK).is_file() or (d / "config.yaml").is_file() and any(
        (d / n).exists()
        for n in ("checkpoints", "metrics.jsonl", "results.json", "tokenizer.json"))


#: kind -> (what it is, in words; how to recognise one without a marker)
KINDS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "checkpoint": ("compact checkpoint (layershare.json)", _has("layershare.json")),
    "dense": ("merged dense model", lambda d: False),
    "run": ("training run directory", _is_run),
    "data": ("prepared data directory (manifest.json)", _has("manifest.json")),
    "onnx": ("ONNX export (onnx.json)", _has("onnx.json", "model.onnx")),
}


def kind_of(directory: Path) -> str | None:
    """The kind of layershare output ``directory`` holds, or None (not layershare's)."""
    directory = Path(directory)
    try:
        marked = json.loads((directory / MARKER).read_text()).get("kind")
        if marked in KINDS:
            return marked
    except (OSError, ValueError, AttributeError):
        pass
    for kind, (_, recognise) in KINDS.items():
        if recognise(directory):
            return kind
    return None


def describe(exc: BaseException) -> str:
    """One line for an OS-level failure: ``No space left on device: /x/y``."""
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename
        return f"{exc.strerror}: {name}" if name else exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _listing(directory: Path, limit: int = 3) -> str:
    names = sorted(p.name for p in directory.iterdir())
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_out(out, kind: str, sources: Iterable = (), overwrite: bool = False,
              flag: str = "--out") -> Path:
    """The output path ``out``, once it is safe to write a ``kind`` output there (see the
    module docstring); raises :class:`LayershareError` with one line otherwise."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")  # a bug in the caller
    if out is None or not str(out).strip():
        raise LayershareError(f"{flag} is empty: give the path of a directory to write")
    path = Path(out).expanduser()
    what = KINDS[kind][0]
    if path.is_symlink() and not (kind == "run" and path.is_dir()):
        raise LayershareError(f"{flag} {path} is a symbolic link; give the directory itself")
    if path.exists() and not path.is_dir():
        raise LayershareError(f"{flag} {path} is a file, not a directory; choose another path "
                              "(layershare never replaces a file)")
    target = path.resolve()
    for src in sources:
        if src is None or not str(src).strip():
            continue
        s = Path(src).expanduser().resolve()
        if target == s:
            raise LayershareError(f"{flag} {path} is the source itself; choose another path")
        if s in target.parents:
            raise LayershareError(f"{flag} {path} lies inside the source {src}; choose a path "
                                  "outside it")
        if target in s.parents:
            raise LayershareError(f"{flag} {path} contains the source {src}; writing there "
                                  "would delete it, choose another path")
    if not path.is_dir():
        return path
    try:
        empty = not any(path.iterdir())
    except OSError as exc:
        raise LayershareError(f"{flag} {path} cannot be read ({describe(exc)})") from None
    if empty:
        return path
    found = kind_of(path)
    if found == kind or (found is not None and overwrite):
        return path
    if found is not None:
        raise LayershareError(f"{flag} {path} holds a layershare {KINDS[found][0]}, not a "
                              f"{what}; pass --overwrite to replace it, or choose another path")
    raise LayershareError(f"{flag} {path} is a non-empty directory that layershare did not "
                          f"write (it holds {_listing(path)}); choose another path")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _sibling_pid(path: Path, marker: str) -> int:
    try:
        return int(path.name.split(marker, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return -1


def clean_stale(directory: Path) -> None:
    """Remove ``.NAME.tmp-PID-*`` siblings of dead processes; put back a dead process's
    ``.NAME.old-PID`` when ``NAME`` itself is missing (killed between the two renames)."""
    directory = Path(directory)
    parent, name = directory.parent, directory.name
    if not parent.is_dir():
        return
    for tmp in parent.glob(f".{name}.tmp-*"):
        if not _pid_alive(_sibling_pid(tmp, ".tmp-")):
            shutil.rmtree(tmp, ignore_errors=True)
    olds = [p for p in parent.glob(f".{name}.old-*") if not _pid_alive(_sibling_pid(p, ".old-"))]
    for old in sorted(olds, key=lambda p: p.stat().st_mtime, reverse=True):
        if not directory.exists():
            old.rename(directory)
        else:
            shutil.rmtree(old, ignore_errors=True)


def mark(directory: Path, kind: str) -> None:
    """Leave the marker that says ``directory`` is a layershare output of ``kind``."""
    (Path(directory) / MARKER).write_text(json.dumps({"kind": kind}) + "\n")


def atomic_directory(directory, write: Callable[[Path], None], kind: str | None = None) -> Path:
    """Call ``write(tmp)`` on a fresh temporary sibling of ``directory``, then rename it into
    place (replacing an earlier output). File-system failures (full disk, read-only target,
    a missing permission) become one-line :class:`LayershareError`; the target is then
    untouched and the temporary directory is gone."""
    from safetensors import SafetensorError

    directory = Path(directory)
    parent = directory.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale(directory)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise LayershareError(f"cannot write {directory}: {describe(exc)}") from None
    try:
        write(tmp)
        if kind is not None:
            mark(tmp, kind)
        _normal_permissions(tmp)
        _replace(tmp, directory)
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LayershareError(f"cannot write {directory}: {describe(exc)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace(tmp: Path, directory: Path) -> None:
    if not directory.exists():
        tmp.rename(directory)
        return
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    directory.rename(old)
    try:
        tmp.rename(directory)
    except BaseException:
        old.rename(directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _normal_permissions(tmp: Path) -> None:
    """mkdtemp makes a private (0700) directory; give it the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for path in tmp.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def replace_file(path: Path, text: str) -> None:
    """``path`` holds ``text``: written to a temporary file beside it, then renamed over it.
    A rename replaces a symbolic link itself, so a file of a directory someone handed us
    (``RUN/test.hyp`` linked to ``~/.bashrc``) never leads a write outside it; and a reader
    never sees half the text."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torch_save(obj, path: Path) -> None:
    """``torch.save``, with its write failures raised as the OSError they are, so
    :func:`atomic_directory` reports them in one line. torch's zip writer turns a full disk
    or a size limit into a RuntimeError (``PytorchStreamWriter failed writing file``,
    ``unexpected pos``); what we save is plain containers of tensors, which serialise, so a
    RuntimeError here is the file system's."""
    import torch

    try:
        torch.save(obj, path)
    except RuntimeError as exc:
        raise OSError(errno.EIO, f"cannot write {Path(path).name}, the disk may be full "
                                 f"({describe(exc)})") from None


@contextmanager
def lock_directory(directory: Path, what: str = "training run"):
    """Hold an exclusive ``fcntl.flock`` on ``directory/train.lock`` for the ``with`` block;
    refuse at once (one line) when another process holds it. The lock goes with the process:
    a killed run leaves no stale lock."""
    directory = Path(directory)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run unguarded
        yield
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fh = open(directory / LOCK, "a+")
    except OSError as exc:
        raise LayershareError(f"cannot write {directory}: {describe(exc)}") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LayershareError(f"{directory} is in use by another {what} (it holds "
                                  f"{directory / LOCK}); wait for it to end or choose another "
                                  "--out") from None
        yield
    finally:
        fh.close()  # releases the lock
