"""The espeak-asr recipe: Bible parsing, the split plan, voices, speaking + cached features."""

import json

import numpy as np
import pytest
from requirements import ESPEAK, need_tool

from layershare.data import espeak, espeak_asr
from layershare.data.audio import log_mel, mel_frames
from layershare.errors import LayershareError

DIATHEKE = """Genesis 1:1: In the beginning, God created the heavens and the earth.
Genesis 1:3: God said, \u201cLet there be light,\u201d and there was light.
1 John 3:11: For this is the message which you heard from the beginning, that we should love one another.
John 3:16: For God so loved the world, that he gave his only bornSon to all.
Psalm 119:1: Blessed are those whose ways are blameless, who walk according to Yahweh\u2019s law.
(engWEB2015eb)
   The following words used in the World English Bible are not very common.
"""


def test_bible_verses_are_parsed_and_cleaned():
    verses = espeak_asr.bible_sentences(DIATHEKE)
    assert verses == [
        "In the beginning, God created the heavens and the earth.",
        "God said, Let there be light, and there was light.",
        "For this is the message which you heard from the beginning, that we should love one another.",
        "For God so loved the world, that he gave his only born Son to all.",
        "Blessed are those whose ways are blameless, who walk according to Yahweh's law."]
    assert all(espeak.speakable(v) for v in verses)


def test_plan_keeps_text_and_voices_apart():
    lo = {"train": [("x", "Open the file menu and choose a printer now."),
                    ("x", "Choose the paper size for this page."),
                    ("x", "Select the cells you want to format.")],
          "valid": [("x", "Click the arrow next to the icon.")],
          "test": [("x", f"Press the button number {w} to continue here.") for w in
                   ("one", "two", "three", "four", "five", "six", "seven", "eight")]}
    bible = ["Select the cells you want to format.", "God saw the light, and it was good."]
    plan = espeak_asr.plan(lo, bible)
    assert plan["test"] == plan["test-voices"] and plan["test"]
    evaluation = {t.lower() for s in ("valid", "test") for t in plan[s]}
    assert not evaluation & {t.lower() for t in plan["train"]}
    assert sorted(plan["train"]) == sorted({*[en for _, en in lo["train"]], bible[1]})
    assert plan["train"] == espeak_asr.plan(lo, bible)["train"]  # a stable order
    train_voices = {espeak_asr.voice_for(t)["voice"] for t in plan["train"] * 20}
    for t in plan["test"]:
        held = espeak_asr.voice_for(t, held_out=True)
        assert held["voice"] in espeak_asr.HELD_OUT_ACCENTS
        assert held["variant"] in espeak_asr.HELD_OUT_VARIANTS
        assert espeak_asr.voice_for(t)["voice"] in espeak_asr.TRAIN_ACCENTS
    assert not train_voices & set(espeak_asr.HELD_OUT_ACCENTS)
    assert set(espeak_asr.TRAIN_ACCENTS) | set(espeak_asr.HELD_OUT_ACCENTS) == set(espeak.VOICES)


def test_espeak_asr_speaks_and_caches_features(tmp_path):
    need_tool("espeak-ng", ESPEAK)
    texts = ["Choose a colour for the border.", "God saw the light, and it was good.",
             "Click the arrow next to the icon."]
    out = tmp_path / "a"
    out.mkdir()
    counts = espeak_asr.speak_split(out, tmp_path / "w", "test-voices", texts, None, False)
    assert counts["utterances"] == 3
    mel, rows = espeak_asr.read_features(out, "test-voices")
    assert mel.dtype == np.float16 and mel.shape[1] == 80
    assert [r["text"] for r in rows] == texts
    assert sum(r["mel_frames"] for r in rows) == len(mel)
    utts = espeak_asr.read_split(out, "test-voices")
    for u, r in zip(utts, rows):
        assert r["voice"] in espeak_asr.HELD_OUT_ACCENTS
        assert r["mel_frames"] == mel_frames(len(u.audio))
        np.testing.assert_allclose(mel[r["mel_start"]:r["mel_start"] + r["mel_frames"]],
                                   log_mel(u.audio).astype(np.float16), rtol=0, atol=1e-2)
    again = tmp_path / "b"
    again.mkdir()
    espeak_asr.speak_split(again, tmp_path / "w2", "test-voices", texts, None, False)
    for name in ("test-voices.mel.npy", "test-voices.wav", "test-voices.jsonl"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    # a time budget stops speaking once enough audio is made
    budget = tmp_path / "c"
    budget.mkdir()
    first = utts[0].seconds
    assert espeak_asr.speak_split(budget, tmp_path / "w3", "train", texts, first / 2,
                                  False)["utterances"] == 1
    assert json.loads((budget / "train.jsonl").read_text())["voice"] in espeak_asr.TRAIN_ACCENTS


def test_hours_must_be_positive(tmp_path):
    with pytest.raises(LayershareError, match="--hours"):
        espeak_asr.build(tmp_path, tmp_path, False, load_source=None, hours=0)
