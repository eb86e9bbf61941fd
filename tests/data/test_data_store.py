"""prepare(): manifest, no-op when verified, rebuild when altered, never a half directory."""

from __future__ import annotations

import json
import os

import pytest

from layershare.data import load_splits, prepare, read_manifest
from layershare.data.store import check_ready, remove_stale_partials
from layershare.errors import LayershareError


def test_prepare_writes_manifest_with_checksums(tmp_path, fake_recipe):
    out = prepare("fake", tmp_path, progress=False)
    assert out == tmp_path / "fake"
    manifest = read_manifest(out)
    assert manifest["recipe"] == "fake" and manifest["recipe_version"] == 1
    assert set(manifest["files"]) == {"train.txt", "test.txt"}
    assert manifest["counts"]["train"] == {"lines": 2}
    assert len(manifest["files"]["train.txt"]["sha256"]) == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_second_prepare_is_a_noop(tmp_path, fake_recipe):
    prepare("fake", tmp_path, progress=False)
    before = (tmp_path / "fake" / "manifest.json").stat().st_mtime_ns
    prepare("fake", tmp_path, progress=False)
    assert fake_recipe.calls == 1
    assert (tmp_path / "fake" / "manifest.json").stat().st_mtime_ns == before
    assert load_splits("fake", tmp_path, progress=False)["test"] == ["e f"]


def test_altered_file_is_detected_and_rebuilt(tmp_path, fake_recipe):
    out = prepare("fake", tmp_path, progress=False)
    (out / "train.txt").write_text("a b\nc X\n")  # same size, different content
    assert "checksum" in check_ready(out, "fake", 1)
    prepare("fake", tmp_path, progress=False)
    assert fake_recipe.calls == 2
    assert (out / "train.txt").read_text() == "a b\nc d\n"


def test_missing_file_or_newer_recipe_version_rebuilds(tmp_path, fake_recipe):
    out = prepare("fake", tmp_path, progress=False)
    (out / "test.txt").unlink()
    assert check_ready(out, "fake", 1) == "test.txt is missing"
    prepare("fake", tmp_path, progress=False)
    assert check_ready(out, "fake", 1) is None and check_ready(out, "fake", 2) is not None
    assert fake_recipe.calls == 2


def test_directory_without_manifest_is_not_ready(tmp_path, fake_recipe):
    half = tmp_path / "fake"
    half.mkdir()
    (half / "train.txt").write_text("a b\n")
    assert "no manifest.json" in check_ready(half, "fake", 1)
    # recipes never write DATA_DIR/NAME in place, so this is the user's: refused, kept
    with pytest.raises(LayershareError, match="did not write"):
        prepare("fake", tmp_path, progress=False)
    assert fake_recipe.calls == 0 and (half / "train.txt").read_text() == "a b\n"
    (half / "train.txt").unlink()  # an empty directory is fine
    prepare("fake", tmp_path, progress=False)
    assert fake_recipe.calls == 1 and check_ready(half, "fake", 1) is None


def test_corrupt_manifest_is_not_ready(tmp_path, fake_recipe):
    out = prepare("fake", tmp_path, progress=False)
    (out / "manifest.json").write_text("{not json")
    assert "unreadable" in check_ready(out, "fake", 1)


def test_crash_leaves_no_ready_looking_directory(tmp_path, fake_recipe):
    fake_recipe.fail = True
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare("fake", tmp_path, progress=False)
    assert not (tmp_path / "fake").exists()
    assert list(tmp_path.iterdir()) == []  # the partial directory was removed
    fake_recipe.fail = False
    prepare("fake", tmp_path, progress=False)
    assert check_ready(tmp_path / "fake", "fake", 1) is None


def test_crash_keeps_previous_good_directory(tmp_path, fake_recipe):
    prepare("fake", tmp_path, progress=False)
    fake_recipe.fail = True
    with pytest.raises(RuntimeError):
        prepare("fake", tmp_path, progress=False, force=True)
    assert check_ready(tmp_path / "fake", "fake", 1) is None


def test_stale_partial_of_dead_process_is_removed(tmp_path):
    dead = tmp_path / ".fake.partial-999999999-abc"   # no such pid
    live = tmp_path / f".fake.partial-{os.getpid()}-abc"
    for d in (dead, live):
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps({"format": 1}))
    assert remove_stale_partials(tmp_path, "fake") == [dead]
    assert live.exists() and not dead.exists()


def test_unknown_and_local_recipes_cannot_be_prepared(tmp_path):
    with pytest.raises(LayershareError, match="unknown data recipe 'nope'"):
        prepare("nope", tmp_path)
    with pytest.raises(LayershareError, match="load_text_splits"):
        prepare("text", tmp_path)


def test_default_data_dir_follows_environment(tmp_path, monkeypatch, fake_recipe):
    monkeypatch.setenv("LAYERSHARE_DATA", str(tmp_path / "env"))
    assert prepare("fake", progress=False) == tmp_path / "env" / "fake"
    monkeypatch.delenv("LAYERSHARE_DATA")
    monkeypatch.chdir(tmp_path)
    assert prepare("fake", progress=False).resolve() == (tmp_path / "data" / "fake").resolve()
