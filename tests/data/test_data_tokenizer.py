"""Byte-level BPE: fixed special ids, exact round trip, determinism, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layershare.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    load_tokenizer,
    recipes,
    train_recipe_tokenizer,
    train_tokenizer,
)
from layershare.errors import LayershareError

TEXTS = ["The jury said no evidence.", "Drücken Sie die Eingabetaste.",
         "Press Enter.", "the destruction of an enemy plane"] * 20


def test_round_trip_and_special_ids(tmp_path):
    path = train_tokenizer(TEXTS, 300, tmp_path)
    assert path == tmp_path / "tokenizer.json"
    tok = load_tokenizer(tmp_path)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    for text in TEXTS[:4] + ["unseen ✓ 漢字 \t tabs  and  spaces", ""]:
        ids = tok.encode(text).ids
        assert UNK_ID not in ids
        assert tok.decode(ids) == text
    assert len(tok.encode("Press Enter.").ids) < len("Press Enter.")  # merges were learnt


def test_training_is_deterministic_and_reads_files(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("\n".join(TEXTS[:2]) + "\n", encoding="utf-8")
    a = train_tokenizer([f, *TEXTS[2:4]] * 5, 290, tmp_path / "a.json")
    b = train_tokenizer([f, *TEXTS[2:4]] * 5, 290, tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["model"]["type"] == "BPE"


@pytest.mark.parametrize("inputs, vocab, message", [
    ("just a string", 300, "not a single string"),
    (TEXTS, 100, "vocab_size must be an integer >= 260"),
    ([], 300, "no training text"),
    ([Path("/nonexistent/train.txt")], 300, "does not exist"),
    ([b"bytes"], 300, "must be str texts or Path files"),
])
def test_training_errors(tmp_path, inputs, vocab, message):
    with pytest.raises(LayershareError, match=message):
        train_tokenizer(inputs, vocab, tmp_path)


def test_load_errors(tmp_path):
    with pytest.raises(LayershareError, match="no tokenizer at"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{oops")
    with pytest.raises(LayershareError, match="not a valid tokenizer.json"):
        load_tokenizer(tmp_path)


def test_recipe_tokenizer_uses_training_split_only(tmp_path, fake_recipe, monkeypatch):
    seen = []

    def spy(texts, vocab_size, out):
        seen.extend(texts)
        return train_tokenizer(list(texts) * 3, vocab_size, out)

    monkeypatch.setattr(recipes, "train_tokenizer", spy)
    path = train_recipe_tokenizer("fake", 270, tmp_path, progress=False)
    assert path == tmp_path / "fake" / "tokenizer-270" / "tokenizer.json"
    assert seen == ["a b", "c d"]             # the fake recipe's train split; test is "e f"
    assert "Ġb" in load_tokenizer(path).get_vocab()
