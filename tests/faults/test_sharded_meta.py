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
import tiny_models as T
import torch
from fault_helpers import assert_one_line, snapshot

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


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """A ``sharded/`` written by ``fsdp.save_sharded`` (model and AdamW state as an FSDP run
    writes them, here in one process), and the model and optimizer that wrote it."""
    from layershare.train.fsdp import save_sharded

    directory = tmp_path_factory.mktemp("resume") / "sharded"
    model = convert(T.gpt2(), method="residual", group_size=2, rank=4)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optim.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_sharded(directory, model, optim)
    return directory, model


def _fresh(model):
    import copy
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    return fresh, torch.optim.AdamW(fresh.parameters(), lr=1.0)


def test_todays_sharded_checkpoint_resumes(resumable):
    from layershare.train.fsdp import load_sharded

    directory, model = resumable
    fresh, optim = _fresh(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_sharded(directory, fresh, optim)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert optim.param_groups[0]["lr"] == 3e-4  # a "bytes" item, read through the planner


def test_crafted_bytes_item_in_a_shard_never_runs(resumable, tmp_path, monkeypatch):
    """Non-tensor entries (lr, betas...) are pickles inside the shards, which DCP's own
    planner reads with ``torch.load(weights_only=False)``: a crafted one must be refused."""
    import io

    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    from layershare.train.fsdp import load_sharded
    from layershare.train.sharded_meta import _AllowListUnpickler

    monkeypatch.chdir(tmp_path)
    directory = tmp_path / "sharded"
    import shutil
    shutil.copytree(resumable[0], directory)
    buffer = io.BytesIO()
    torch.save(_Payload(tmp_path / "PWNED", "PWNED"), buffer)
    (directory / "evil.distcp").write_bytes(buffer.getvalue())
    with open(directory / ".metadata", "rb") as f:
        meta = _AllowListUnpickler(f).load()
    target = next(k for k, v in meta.state_dict_metadata.items()
                  if isinstance(v, BytesStorageMetadata) and k.endswith(".lr"))
    for index, info in meta.storage_data.items():
        if index.fqn == target:
            info.relative_path, info.offset, info.length = "evil.distcp", 0, len(buffer.getvalue())
    (directory / ".metadata").write_bytes(pickle.dumps(meta))
    fresh, optim = _fresh(resumable[1])
    with pytest.raises(LayershareError, match="cannot be read"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_sharded(directory, fresh, optim)
    assert not (tmp_path / "PWNED").exists()
