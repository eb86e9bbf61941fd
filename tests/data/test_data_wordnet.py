"""WordNet: synset line parsing, label names, cleaning and the stratified split."""

from __future__ import annotations

from collections import Counter

import pytest

from layershare.data import wordnet
from layershare.data.split import stable_unit, stratified_split
from layershare.errors import LayershareError

NOUN = ("00217593 04 n 01 kill 1 002 @ 00217014 n 0000 + 00355365 v 0101 | the destruction "
        "of an enemy plane or ship or tank or missile; \"the pilot reported two kills\"  \n")
VERB = "01835496 38 v 01 travel 0 001 @ 01831531 v 0000 01 + 02 00 | change location; move  \n"


def test_parse_synset_lines():
    assert wordnet.parse_line(NOUN) == (
        "00217593", "noun.act", 'the destruction of an enemy plane or ship or tank or '
        'missile; "the pilot reported two kills"')
    assert wordnet.parse_line(VERB)[1:] == ("verb.motion", "change location; move")
    assert wordnet.parse_line("  1 This software and database is being provided\n") is None


def test_bad_lines_are_clear_errors():
    with pytest.raises(LayershareError, match="malformed"):
        wordnet.parse_line("00001740 03 n 01 entity 0 000 no gloss here\n")
    with pytest.raises(LayershareError, match="lex_filenum 45"):
        wordnet.parse_line("00001740 45 n 01 entity 0 000 | x\n")


def test_label_names_are_the_45_lexnames():
    assert len(wordnet.LEXNAMES) == len(set(wordnet.LEXNAMES)) == 45
    assert wordnet.LEXNAMES[3] == "noun.Tops" and wordnet.LEXNAMES[44] == "adj.ppl"
    assert [n.split(".")[0] for n in wordnet.LEXNAMES[29:44]] == ["verb"] * 15


def test_read_synsets_and_clean(tmp_path):
    (tmp_path / "data.noun").write_text("  1 licence\n" + NOUN)
    (tmp_path / "data.verb").write_text(VERB + VERB.replace("01835496", "01835497")
                                        + VERB.replace("01835496 38", "01835498 30"))
    (tmp_path / "data.adj").write_text("00001740 00 a 01 able 0 000 | (usually) able\n")
    (tmp_path / "data.adv").write_text("")
    synsets = wordnet.read_synsets(tmp_path)
    assert [k for k, _, _ in synsets] == ["noun:00217593", "verb:01835496", "verb:01835497",
                                          "verb:01835498", "adj:00001740"]
    cleaned = wordnet.clean(synsets)  # duplicate gloss with two labels: dropped entirely
    assert [(label, text) for _, label, text in cleaned] == [
        ("noun.act", synsets[0][2]), ("adj.all", "(usually) able")]


def test_stratified_split_keeps_every_label_everywhere_and_is_deterministic():
    keys = [f"noun:{i:08d}" for i in range(1000)]
    labels = ["big"] * 900 + ["small"] * 60 + ["tiny"] * 40
    split = stratified_split(keys, labels)
    assert split == stratified_split(keys, labels)
    assert sorted(sum(split.values(), [])) == list(range(1000))
    for part in split.values():
        assert set(Counter(labels[i] for i in part)) == {"big", "small", "tiny"}
    assert len(split["test"]) == 90 + 6 + 4
    assert stable_unit("x") == stable_unit("x") != stable_unit("y")
    with pytest.raises(LayershareError, match="unique"):
        stratified_split(["a", "a"], ["x", "y"])
