"""The text and parallel recipes: the user's own files, validated early and clearly."""

from __future__ import annotations

import pytest

from layershare.data import load_parallel_splits, load_text_splits
from layershare.errors import LayershareError


@pytest.fixture
def files(tmp_path):
    for name, text in {"tr.txt": "one\n\ntwo\r\n", "va.txt": "three\n", "te.txt": "four",
                       "tr.de": "eins\nzwei\n", "tr.en": "one\ntwo\n", "va.de": "drei\n",
                       "va.en": "three\n", "te.de": "vier\n\u2028x\n", "te.en": "four\nx\n",
                       "short.en": "one\n"}.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_text_splits(files):
    cfg = {"train": str(files / "tr.txt"), "valid": files / "va.txt", "test": "te.txt"}
    assert load_text_splits(cfg, base_dir=files) == {
        "train": ["one", "two"], "valid": ["three"], "test": ["four"]}


def test_parallel_splits_list_or_mapping(files):
    cfg = {"train": ["tr.de", "tr.en"], "valid": {"src": "va.de", "tgt": "va.en"},
           "test": ("te.de", "te.en"), "recipe": "parallel"}
    out = load_parallel_splits(cfg, base_dir=files)
    assert out["train"] == [("eins", "one"), ("zwei", "two")]
    assert out["valid"] == [("drei", "three")]
    assert out["test"] == [("vier", "four"), ("\u2028x", "x")]  # U+2028 does not split lines


@pytest.mark.parametrize("cfg, message", [
    ({"train": "tr.txt", "valid": "va.txt"}, "missing test"),
    ({"train": "tr.txt", "valid": "va.txt", "test": "te.txt", "tset": "x"}, "unknown key"),
    ({"train": "tr.txt", "valid": "va.txt", "test": "nope.txt"}, "test: file .*nope.txt"),
    ({"train": "tr.txt", "valid": 3, "test": "te.txt"}, "valid: expected a file path"),
    (["tr.txt"], "expected a mapping"),
])
def test_text_errors(files, cfg, message):
    with pytest.raises(LayershareError, match=message):
        load_text_splits(cfg, base_dir=files)


@pytest.mark.parametrize("train, message", [
    (["tr.de", "short.en"], "tr.de has 2 lines but .*short.en has 1"),
    (["tr.de"], r"expected \[src, tgt\]"),
    ({"source": "tr.de", "tgt": "tr.en"}, "expected keys src and tgt"),
    (["tr.de", "missing.en"], "train tgt: file .*missing.en does not exist"),
])
def test_parallel_errors(files, train, message):
    cfg = {"train": train, "valid": ["va.de", "va.en"], "test": ["te.de", "te.en"]}
    with pytest.raises(LayershareError, match=message):
        load_parallel_splits(cfg, base_dir=files)


def test_invalid_utf8_and_empty_split(files):
    (files / "bad.txt").write_bytes(b"ok\n\xff\n")
    (files / "empty.txt").write_text("\n \n")
    with pytest.raises(LayershareError, match=r"bad.txt:2: not valid UTF-8"):
        load_text_splits({"train": "bad.txt", "valid": "va.txt", "test": "te.txt"}, files)
    with pytest.raises(LayershareError, match="no non-blank line"):
        load_text_splits({"train": "empty.txt", "valid": "va.txt", "test": "te.txt"}, files)
