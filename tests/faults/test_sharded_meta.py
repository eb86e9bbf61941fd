"""A sharded (FSDP) checkpoint's ``.metadata`` can never run code.

DCP writes ``sharded/.metadata`` with pickle; ``consolidate`` and an FSDP resume read it with
an allow-listed unpickler (train/sharded_meta.py). Each crafted file here would run a
command or read outside the checkpoint under plain ``pickle.load``: it must be one line,
exit 2, no marker file (looked for in the working directory AND tmp_path), no output. A
checkpoint written by today's ``dcp.save`` still consolidates."""

from __future__ import annotations

import os
import pickle
import warnings

import pytest
import torch
from fault_helpers import assert_one_line, snapshot

import tiny_models as T
from layershare import convert, load, save
from layershare.errors import LayershareError


@pytest.fixture(scope="module")
def sharded_ck(tmp_path_factory):
    """RUN/checkpoints/last of an FSDP run, written in one process: model/ (structure) and
    sharded/ (DCP, model and AdamW state)."""
    import torch.distributed.checkpoint as dcp

    ck = tmp_path_factory.mktemp("fsdp") / "last"
    model = convert(T.gpt2(), method="residual", group_size=2, rank=4)
    save(model, ck / "model")
    optim = torch.optim.AdamW(model.parameters())
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optim.step()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # the shards differ from model/'s weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": model.state_dict(), "optim": optim.state_dict()},
                 checkpoint_id=str(ck / "sharded"), no_dist=True)
    return ck, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


class _Payload:
    """Unpickling this runs ``touch`` of both markers (what a crafted .metadata does)."""

    def __init__(self, *markers):
        self.markers = markers

    def __reduce__(self):
        return (os.system, (" ; ".join(f"touch {m}" for m in self.markers),))


def test_todays_sharded_checkpoint_consolidates(sharded_ck, tmp_path, cli):
    ck, state = sharded_ck
    rc, err = cli(["consolidate", ck, "--out", tmp_path / "out"])
    assert rc == 0, err
    got = load(tmp_path / "out").state_dict()
    for name, value in state.items():
        assert torch.equal(got[name], value), name


@pytest.mark.parametrize("variant", ["payload", "payload-inside-metadata"])
def test_crafted_metadata_never_runs(variant, sharded_ck, tmp_path, cli, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ck = _copy(sharded_ck[0], tmp_path / "last")
    meta = ck / "sharded" / ".metadata"
    payload = _Payload(tmp_path / "PWNED", "PWNED")
    if variant == "payload":
        meta.write_bytes(pickle.dumps(payload))
    else:  # a real Metadata whose planner_data hides the payload
        from layershare.train.sharded_meta import _AllowListUnpickler
        with open(meta, "rb") as f:
            real = _AllowListUnpickler(f).load()
        real.planner_data = {"x": payload}
        meta.write_bytes(pickle.dumps(real))
    before = snapshot(tmp_path)
    rc, err = cli(["consolidate", ck, "--out", tmp_path / "out"])
    assert_one_line(rc, err, "refused")
    assert not (tmp_path / "PWNED").exists() and not (work / "PWNED").exists()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where, words", [
    ("../outside.distcp", "not a file name inside"),
    ("/etc/passwd", "not a file name inside"),
    ("missing.distcp", "no such file"),
    ("fifo", "not a regular file"),
    ("bytes", "declares bytes"),
])
def test_metadata_pointing_outside_or_past_the_end(where, words, sharded_ck, tmp_path, cli):
    from layershare.train.sharded_meta import _AllowListUnpickler

    ck = _copy(sharded_ck[0], tmp_path / "last")
    meta = ck / "sharded" / ".metadata"
    with open(meta, "rb") as f:
        real = _AllowListUnpickler(f).load()
    info = next(iter(real.storage_data.values()))
    if where == "fifo":
        os.mkfifo(ck / "sharded" / "fifo")
    if where == "bytes":
        info.length = 1 << 40
    else:
        info.relative_path = where
    meta.write_bytes(pickle.dumps(real))
    before = snapshot(tmp_path)
    rc, err = cli(["consolidate", ck, "--out", tmp_path / "out"])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before


def test_truncated_metadata_is_one_line(sharded_ck, tmp_path, cli):
    ck = _copy(sharded_ck[0], tmp_path / "last")
    meta = ck / "sharded" / ".metadata"
    meta.write_bytes(meta.read_bytes()[:500])
    rc, err = cli(["consolidate", ck, "--out", tmp_path / "out"])
    assert_one_line(rc, err, "not a sharded checkpoint's metadata")
    assert not (tmp_path / "out").exists()


def test_dcp_failure_is_one_line(sharded_ck, tmp_path, cli):
    """A shard file cut short: DCP raises a CheckpointException (a BaseException)."""
    ck = _copy(sharded_ck[0], tmp_path / "last")
    meta = ck / "sharded" / ".metadata"
    from layershare.train.sharded_meta import _AllowListUnpickler
    with open(meta, "rb") as f:
        real = _AllowListUnpickler(f).load()
    for info in real.storage_data.values():
        info.offset = 0  # every record now reads the first record's bytes
    meta.write_bytes(pickle.dumps(real))
    rc, err = cli(["consolidate", ck, "--out", tmp_path / "out"])
    assert_one_line(rc, err, "cannot be read")
    assert not (tmp_path / "out").exists()


def test_resume_reads_metadata_through_the_allow_list(sharded_ck, tmp_path, monkeypatch):
    """``load_sharded`` (an FSDP resume) refuses the payload as consolidate does."""
    from layershare.train.fsdp import load_sharded

    monkeypatch.chdir(tmp_path)
    ck = _copy(sharded_ck[0], tmp_path / "last")
    (ck / "sharded" / ".metadata").write_bytes(pickle.dumps(_Payload(tmp_path / "PWNED", "PWNED")))
    model = load(ck / "model")
    optim = torch.optim.AdamW(model.parameters())
    with pytest.raises(LayershareError, match="refused"):
        load_sharded(ck / "sharded", model, optim)
    assert not (tmp_path / "PWNED").exists()
