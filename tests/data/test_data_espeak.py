"""The espeak-en recipe (on 3 sentences) and the librivox recipe (on a fake package tree)."""

import wave

import numpy as np
import pytest
from requirements import ESPEAK, need_module, need_tool

from layershare.data import audio, espeak, librivox
from layershare.data.store import check_ready, write_manifest
from layershare.errors import LayershareError

SENTENCES = ["Select the cell and press Enter.", "Choose Format - Cells.",
             "The dialog closes when you click OK."]


def test_sentence_filter_and_voices():
    assert espeak.speakable("Choose a colour for the border.")
    assert not espeak.speakable("Press Ctrl+C.")           # symbols
    assert not espeak.speakable("Set it to 42 points.")    # digits
    assert not espeak.speakable("See e.g. the manual.")    # inner full stop
    assert not espeak.speakable("Too short.")
    assert espeak.choose_sentences(["A b c d.", "A  b c d.", "x"]) == ["A b c d."]
    v = espeak.voice_of(SENTENCES[0])
    assert v == espeak.voice_of(SENTENCES[0]) and v["voice"] in espeak.VOICES
    assert len({tuple(espeak.voice_of(s).values()) for s in SENTENCES}) == 3


def test_espeak_recipe_on_three_sentences(tmp_path):
    need_tool("espeak-ng", ESPEAK)
    need_module("soxr", "speech")
    out = tmp_path / "espeak-en"
    out.mkdir()
    counts = espeak.build_from_sentences(out, tmp_path / "work", SENTENCES, progress=False,
                                         valid=0.0, test=1.0)
    assert counts["test"]["utterances"] == 3 and counts["train"]["utterances"] == 0
    write_manifest(out, "espeak-en", espeak.VERSION, {}, counts)
    assert check_ready(out, "espeak-en", espeak.VERSION) is None
    utts = espeak.read(out)["test"]
    assert [u.text for u in utts] == SENTENCES
    for u in utts:
        assert 0.8 < u.seconds < 6 and np.abs(u.audio).max() > 0.05  # speech, not silence
        assert u.meta == espeak.voice_of(u.text)
    with wave.open(str(out / "test.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
    # the same sentences give the same audio (the voice is a function of the sentence)
    again = tmp_path / "again"
    again.mkdir()
    espeak.build_from_sentences(again, tmp_path / "w2", SENTENCES, False, valid=0.0, test=1.0)
    assert (again / "test.wav").read_bytes() == (out / "test.wav").read_bytes()


def test_audio_split_round_trip_and_errors(tmp_path):
    rows = [("a", "one", np.int16([1, 2, 3]), {"voice": "x"}),
            ("b", "two words", np.int16([4]), {})]
    counts = audio.write_split(tmp_path, "test", rows)
    assert counts == {"utterances": 2, "words": 3, "seconds": 0.0}
    got = audio.read_split(tmp_path, "test")
    assert [(u.id, u.text, u.meta) for u in got] == [("a", "one", {"voice": "x"}),
                                                     ("b", "two words", {})]
    np.testing.assert_allclose(got[0].audio * 32768, [1, 2, 3])
    (tmp_path / "test.wav").write_bytes(b"RIFFjunk")
    with pytest.raises(LayershareError, match="not a readable WAV"):
        audio.read_split(tmp_path, "test")


def _fake_librivox(root, n=5):
    root.mkdir(parents=True)
    lines = []
    for i in range(n):
        uid = f"clip-{i}"
        with wave.open(str(root / f"{uid}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(np.int16(np.arange(1600) % 100).tobytes())
        lines.append(f"<s> words of clip {i} </s> ({uid})")
    (root / "transcription").write_text("\n".join(lines) + "\n")


def test_librivox_from_package_tree(tmp_path):
    _fake_librivox(tmp_path / "root")
    out = tmp_path / "out"
    out.mkdir()
    counts = librivox.build_from_root(out, tmp_path / "root")
    assert counts["test"]["utterances"] == 5 and counts["test"]["words"] == 20
    utts = librivox.read(out)["test"]
    assert utts[2].text == "words of clip 2" and utts[2].seconds == pytest.approx(0.1)
    with pytest.raises(LayershareError, match="no training split"):
        librivox.train_texts(out)


def test_librivox_bad_transcription(tmp_path):
    with pytest.raises(LayershareError, match="unexpected transcription line"):
        librivox.parse_transcription("hello (x)\n")
    _fake_librivox(tmp_path / "root", n=4)
    (tmp_path / "out").mkdir()
    with pytest.raises(LayershareError, match="expected 5 clips, found 4"):
        librivox.build_from_root(tmp_path / "out", tmp_path / "root")
