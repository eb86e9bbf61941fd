"""A training run's directory before the first step: resume, start afresh, or refuse.

``OUT`` has already passed :func:`layershare.outputs.check_out` (kind ``run``) and rank 0
holds its lock. :func:`prepare` then decides: a complete ``checkpoints/last`` with the same
config (up to the keys in :data:`RESTARTABLE`) resumes; another config is refused;
otherwise the run starts afresh, and leftovers of a killed attempt are removed.
``config.yaml`` is written only once the model is built (:func:`write_config`), and a fresh
start that fails before that removes what it added (:func:`discard_fresh`): a config error
found late leaves no half-started run behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ..errors import LayershareError
from ..outputs import LOCK
from .config import RunConfig, read_run_config
from .datasets import TOKENIZER
from .report import RESULTS
from .state import read_info, recover

CONFIG = "config.yaml"
#: keys a resumed run may change (a longer run, other evaluation settings)
RESTARTABLE = {"train": ("steps", "eval_every", "save_every", "log_every", "eval_batches"),
               "eval": ("batch_size", "beam_size", "max_len", "test_limit")}


def same_run(saved: dict, cfg: RunConfig) -> bool:
    a, b = dict(saved), cfg.to_dict()
    for section, keys in RESTARTABLE.items():
        a[section] = {k: v for k, v in a[section].items() if k not in keys}
        b[section] = {k: v for k, v in b[section].items() if k not in keys}
    return a == b


def data_paths(cfg: RunConfig) -> list[str]:
    """The files a run reads: with ``--overwrite`` OUT is emptied, so it must not hold them."""
    d = cfg.data
    paths = [d.tokenizer, d.dir, cfg.distill.student, cfg.distill.teacher]
    for split in (d.train, d.valid, d.test):
        paths += split if isinstance(split, list) else (
            list(split.values()) if isinstance(split, dict) else [split])
    return [p for p in paths if isinstance(p, str)]


def prepare(out: Path, cfg: RunConfig, overwrite: bool) -> tuple[dict | None, set | None]:
    """(info of the checkpoint to resume or None, the entries a fresh start found in OUT or
    None when resuming); ``overwrite`` empties OUT first (all but the held lock)."""
    if overwrite:
        for entry in out.iterdir() if out.is_dir() else ():
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() \
                    else entry.unlink()
    recover(out)
    info = read_info(out)
    path = out / CONFIG
    if info is not None:
        if not same_run(read_run_config(path).to_dict(), cfg):
            raise LayershareError(f"{out} holds a run with a different config ({path}); use "
                                  "the same config to resume, --overwrite to start afresh, "
                                  "or another --out")
        return info, None
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # nothing of an earlier attempt
    for name in (TOKENIZER, "labels.json", RESULTS):
        (out / name).unlink(missing_ok=True)
    return None, {p.name for p in out.iterdir()}


def write_config(out: Path, cfg: RunConfig) -> None:
    """``OUT/config.yaml``, atomically (a temporary file renamed over it)."""
    tmp = out / (CONFIG + ".partial")
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    tmp.replace(out / CONFIG)


def discard_fresh(out: Path, fresh_entries: set | None, created: bool) -> None:
    """After a failed fresh start: remove what it added to OUT (tokenizer, labels, lock), and
    OUT itself when the run created it. A resumed run (``fresh_entries`` None) keeps all."""
    if fresh_entries is None or not out.is_dir():
        return
    for entry in out.iterdir():
        if created or entry.name not in fresh_entries:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else \
                entry.unlink(missing_ok=True)
    if created:
        out.rmdir()
