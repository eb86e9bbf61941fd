"""kill -9 of a whole torchrun job, as a scheduler or a power cut ends it (Linux /proc).

Why not ``os.killpg`` of the launcher's group: torchrun starts every worker in a session of
its own (``start_new_session=True`` in torch.distributed.elastic's subprocess handler), so
killing the launcher's group leaves the workers running; with gloo they no longer need the
launcher's store and train on to the end -- a "resumed" run then only finds a finished one.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])  # the name may hold spaces and ')'
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    return kids


def descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped running


def kill_job(proc, timeout: float = 30.0) -> None:
    """SIGKILL the launcher ``proc`` (a ``subprocess.Popen``) and every process under it,
    then wait until none of them runs any more."""
    victims = descendants(proc.pid)
    for pid in victims + [proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in victims):
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {victims} still run after SIGKILL")
        time.sleep(0.01)


def kill_after_checkpoint(cmd: list[str], out: Path, env: dict, after_step: int = 3,
                          timeout: float = 300.0):
    """Start the torchrun job ``cmd`` writing to ``out``, kill -9 all of it as soon as its
    ``last`` checkpoint is at step >= ``after_step``; the step of the ``last`` checkpoint
    that survived the kill, read after it (a later checkpoint can land between the poll and
    the kill), or None when the job ended first."""
    import subprocess

    from layershare.train.state import read_info, recover

    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at, deadline = None, time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        info = read_info(out) if (out / "checkpoints" / "last" / "info.json").is_file() else None
        if info is not None and info["step"] >= after_step:
            kill_job(proc)  # the launcher and its workers
            recover(out)  # as a resume does: a kill between two renames leaves .last.old-*
            killed_at = read_info(out)["step"]  # what a resume starts from
            break
        time.sleep(0.01)
    proc.wait()
    return killed_at
