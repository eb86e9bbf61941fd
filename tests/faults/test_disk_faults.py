"""Read-only targets and full disks: the destination is untouched (or complete), the error
is one line, the temporary output is gone, the user's files are byte-identical.

* read-only: a directory the writer may not write to. The suite runs as root in CI, for whom
  every directory is writable, so the command runs as the user ``nobody`` in a subprocess
  (skipped, with the reason, where that user cannot run this checkout's Python);
* full disk: a 96 KiB tmpfs where mounting is permitted (root), and everywhere a
  ``RLIMIT_FSIZE`` subprocess (a real write failure in every layer: Python, safetensors'
  Rust writer, torch's zip writer) and an in-process ENOSPC planted in the writers.
"""

from __future__ import annotations

import errno
import os
import pwd
import resource
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import tiny_models as T
from fault_helpers import assert_one_line, run_module, snapshot, text_files, train_sets

import layershare

WRITERS = ("convert", "merge", "train", "data-prepare", "save")


def _argv(command: str, src: Path, compact: Path, data: dict, out: Path) -> list:
    if command == "convert":
        return ["convert", src, "--method", "tied", "--out", out]
    if command == "merge":
        return ["merge", compact, "--out", out]
    if command == "train":
        return ["train", "--quiet", *train_sets(data), "--out", out]
    if command == "data-prepare":
        return ["data", "prepare", "brown", "--quiet", "--dir", out.parent]
    return None  # save: the Python API



@pytest.fixture
def world(tmp_path_factory, gpt2_src, compact):
    """A world-readable copy of the inputs (pytest's tmp is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="layershare-faults-", dir="/tmp"))
    base.chmod(0o755)
    shutil.copytree(gpt2_src, base / "src")
    shutil.copytree(compact, base / "compact")
    data = text_files(base / "data")
    home = base / "home"
    home.mkdir()
    home.chmod(0o777)
    for path in base.rglob("*"):
        path.chmod(0o777 if path == home else (0o755 if path.is_dir() else 0o644))
    yield base, data
    shutil.rmtree(base, ignore_errors=True)


def _nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


def _demote(user):
    def run():
        os.setgid(user.pw_gid)
        os.setgroups([])
        os.setuid(user.pw_uid)
    return run


@pytest.fixture
def readonly(tmp_path):
    """(a directory holding the user's file that this process cannot write, how to run a
    writer there: "in-process" or "nobody"). Non-root: chmod 0555. Root, for whom modes do
    not count: a read-only tmpfs mount where permitted, else the user 'nobody'."""
    where = tmp_path / "readonly"
    where.mkdir()
    if os.geteuid() != 0:
        (where / "mine.txt").write_text("mine\n")
        where.chmod(0o555)
        yield where, "in-process"
        where.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                             capture_output=True, text=True) if shutil.which("mount") else None
    if mounted is not None and mounted.returncode == 0:
        (where / "mine.txt").write_text("mine\n")
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where, "in-process"
        subprocess.run(["umount", str(where)], check=False)
        return
    (where / "mine.txt").write_text("mine\n")
    yield where, "nobody"


def _as_nobody(argv, base: Path):
    user = _nobody()
    if user is None:
        pytest.skip("root, no tmpfs mount permitted and no user 'nobody' to drop to")
    env = {"HOME": str(base / "home"), "MPLCONFIGDIR": str(base / "home"),
           "TMPDIR": str(base / "home")}
    try:
        probe = run_module(["--help"], env=env, preexec_fn=_demote(user), cwd=base)
    except OSError as exc:
        pytest.skip(f"root, no tmpfs mount permitted, and 'nobody' cannot run this Python "
                    f"({exc.strerror}: {exc.filename})")
    if probe.returncode != 0:
        pytest.skip("root, no tmpfs mount permitted, and 'nobody' cannot import layershare")
    proc = run_module(argv, env=env, preexec_fn=_demote(user), cwd=base)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("command", WRITERS)
def test_read_only_target(command, readonly, world, cli, monkeypatch):
    where, how = readonly
    base, data = world
    out = where / ("brown" if command == "data-prepare" else "out")
    keep = (base / "src", base / "compact", base / "data", where)
    before = snapshot(*keep)
    if command == "save":
        if how != "in-process":
            pytest.skip("the Python API is tested in-process")
        with pytest.raises(layershare.LayershareError) as exc:
            layershare.save(T.gpt2(), out)
        rc, err = 2, f"layershare: error: {exc.value}\n"
    elif how == "in-process":
        monkeypatch.chdir(base)
        rc, err = cli(_argv(command, base / "src", base / "compact", data, out))
    else:
        where.chmod(0o755)
        rc, err = _as_nobody(_argv(command, base / "src", base / "compact", data, out), base)
    assert_one_line(rc, err)
    assert "Permission denied" in err or "Read-only file system" in err, err
    assert snapshot(*keep) == before


def _limit_file_size(limit: int):
    def run():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return run


@pytest.mark.parametrize("command", ["convert", "train"])
def test_write_fails_midway(command, world, tmp_path):
    """Every file larger than 40 kB fails to write: the weights (convert, merge) or the
    first checkpoint (train)."""
    base, data = world
    out = tmp_path / "out"
    argv = _argv(command, base / "src", base / "compact", data, out)
    before = snapshot(base / "src", base / "compact", base / "data")
    proc = run_module(argv, preexec_fn=_limit_file_size(40_000), cwd=tmp_path)
    assert_one_line(proc.returncode, proc.stderr, "cannot write")
    assert snapshot(base / "src", base / "compact", base / "data") == before
    if command == "train":  # the run directory stays resumable; no half checkpoint in it
        assert not (out / "checkpoints" / "last").exists()
        assert (not [p for p in (out / "checkpoints").glob(".*")]
                if (out / "checkpoints").exists() else True)
    else:
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.fixture
def small_tmpfs():
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="layershare-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=False)
    where.rmdir()


@pytest.mark.parametrize("command", ["convert", "merge", "train"])
def test_full_disk_tmpfs(command, small_tmpfs, world, cli, monkeypatch):
    base, data = world
    monkeypatch.chdir(base)
    (small_tmpfs / "mine.txt").write_text("mine\n")
    out = small_tmpfs / "out"
    argv = _argv(command, base / "src", base / "compact", data, out)
    before = snapshot(base / "src", base / "compact", base / "data", small_tmpfs / "mine.txt")
    rc, err = cli(argv)
    assert_one_line(rc, err, "No space left on device")
    assert snapshot(base / "src", base / "compact", base / "data", small_tmpfs / "mine.txt") \
        == before
    if command != "train":
        assert not out.exists()
    assert [p.name for p in small_tmpfs.iterdir() if p.name.startswith(".")] == []


def _enospc(*args, **kwargs):
    path = next((a for a in args if isinstance(a, (str, os.PathLike))), "x")
    Path(path).write_bytes(b"half a file")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("command", ["convert", "save", "train", "data-prepare"])
def test_full_disk_planted(command, tmp_path, gpt2_src, cli, monkeypatch):
    """ENOSPC from the writers themselves (safetensors, torch.save, a recipe's files)."""
    import layershare.checkpoint
    import layershare.outputs
    monkeypatch.setattr(layershare.checkpoint, "save_file", _enospc)
    monkeypatch.setattr(layershare.outputs.torch_save, "__code__",
                        (lambda obj, path: _enospc(path)).__code__)
    out = tmp_path / "out"
    before = snapshot(gpt2_src)
    if command == "save":
        with pytest.raises(layershare.LayershareError) as exc:
            layershare.save(T.gpt2(), out)
        rc, err = 2, f"layershare: error: {exc.value}\n"
    elif command == "data-prepare":
        from layershare.data import recipes
        recipe = recipes.RECIPES["brown"]
        monkeypatch.setitem(recipes.RECIPES, "brown", type(recipe)(
            **{**recipe.__dict__, "build": lambda partial, work, progress: _enospc(
                partial / "train.txt")}))
        rc, err = cli(["data", "prepare", "brown", "--quiet", "--dir", tmp_path / "data"])
        out = tmp_path / "data" / "brown"
    elif command == "train":
        monkeypatch.setattr(layershare.checkpoint, "save_file", _enospc)
        rc, err = cli(["train", "--quiet", *train_sets(text_files(tmp_path / "d")), "--out", out])
    else:
        rc, err = cli(["convert", gpt2_src, "--method", "tied", "--out", out])
    assert_one_line(rc, err, "No space left on device")
    assert snapshot(gpt2_src) == before
    if command != "train":
        assert not out.exists()
        assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    else:
        assert not (out / "checkpoints" / "last").exists()
