"""kill -9 at random points of convert and train, and two trainings into one directory.

After a SIGKILL the destination is absent or complete, and the same command run again
succeeds and leaves no temporary sibling behind. The kill times are drawn from a seeded
generator over the measured length of an unbroken run, so each run of the suite tries the
same points.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

from fault_helpers import SRC, assert_one_line, run_module, text_files, train_sets

import layershare


def _popen(argv, cwd):
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "layershare", *map(str, argv)], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _timed(argv, cwd) -> float:
    start = time.monotonic()
    done = run_module(argv, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - start


def _kill_at(argv, cwd, seconds: float) -> bool:
    """Run ``argv``, SIGKILL it after ``seconds``; True if the kill landed (the process was
    still running), False if it had finished by then."""
    proc = _popen(argv, cwd)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return proc.returncode == -signal.SIGKILL


def _hidden(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_kill_convert_at_random_points(tmp_path, gpt2_src, cli):
    out = tmp_path / "out"
    argv = ["convert", gpt2_src, "--method", "residual", "--rank", "4", "--out", out]
    full = _timed(argv, tmp_path)
    reference = layershare.count(layershare.load(out)).unique_params
    rng = random.Random(13)
    killed = 0
    for point in sorted(rng.uniform(0.5, 1.0) * full for _ in range(3)):
        killed += _kill_at(argv, tmp_path, point)
        if out.exists():  # complete: the earlier output or the new one, never half of one
            assert layershare.count(layershare.load(out)).unique_params == reference
        rc, err = cli(argv)  # the re-run (in this process: no second interpreter start-up)
        assert rc == 0, err
        assert _hidden(tmp_path) == []
        assert layershare.count(layershare.load(out)).unique_params == reference
    assert killed, "every run finished before its kill point: nothing was tested"


def test_kill_train_at_random_points(tmp_path, cli):
    data = text_files(tmp_path / "data")
    argv = ["train", "--quiet", *train_sets(data, steps=8), "--out", tmp_path / "run"]
    full = _timed(argv, tmp_path)
    out = tmp_path / "run2"
    argv[-1] = out
    rng = random.Random(13)
    killed = 0
    for point in sorted(rng.uniform(0.4, 1.0) * full for _ in range(2)):
        killed += _kill_at(argv, tmp_path, point)
        last = out / "checkpoints" / "last"
        if last.exists():  # complete: it loads
            layershare.load(last / "model")
        rc, err = cli(argv)  # resumes from checkpoints/last (or starts afresh)
        assert rc == 0, err
        assert (out / "results.json").is_file()
        assert _hidden(out / "checkpoints") == []
        shutil.rmtree(out)  # the next round starts afresh
    assert killed, "every run finished before its kill point: nothing was tested"


def test_two_trainings_into_one_directory(tmp_path, cli):
    """The first run holds the lock on OUT; the second is refused with one line and
    changes nothing; the first finishes normally."""
    data = text_files(tmp_path / "data")
    out = tmp_path / "run"
    sets = train_sets(data, steps=400, **{"train.eval_every": 400, "train.save_every": 400})
    first = _popen(["train", "--quiet", *sets, "--out", out], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.yaml").exists():  # written once the run is under way
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        stamp = {n: (out / n).stat().st_mtime_ns for n in ("config.yaml", "tokenizer.json")}
        rc, err = cli(["train", "--quiet", *sets, "--out", out])
        assert_one_line(rc, err, "in use by another training run")
        assert first.poll() is None  # still running, untouched by the refused one
        assert {n: (out / n).stat().st_mtime_ns for n in stamp} == stamp
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        first.stderr.close()
    # the lock went with the killed process: the same command now resumes
    rc, err = cli(["train", "--quiet", *train_sets(data, steps=4), "--out", out,
                   "--overwrite"])
    assert rc == 0, err


def test_lock_held_in_process_refuses(tmp_path, cli):
    from layershare.outputs import lock_directory

    data = text_files(tmp_path / "data")
    out = tmp_path / "run"
    with lock_directory(out):
        rc, err = cli(["train", "--quiet", *train_sets(data), "--out", out])
    assert_one_line(rc, err, "in use")
    assert sorted(p.name for p in out.iterdir()) == ["train.lock"]
