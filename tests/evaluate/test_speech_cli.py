"""``layershare convert`` of a CTranslate2 Whisper and ``layershare eval-speech`` on it."""

import json
import wave

import numpy as np
import pytest
import speech_helpers as S
import tiny_models as T
from requirements import need_module

from layershare.cli import main
from layershare.data import librivox
from layershare.data.store import write_manifest

need_module("jiwer", "speech")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A prepared ``librivox`` recipe made of five noise clips (no apt needed)."""
    base = tmp_path_factory.mktemp("data")
    root = base / "src"
    root.mkdir()
    g = np.random.default_rng(0)
    lines = []
    for i in range(5):
        with wave.open(str(root / f"c{i}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes((3000 * g.standard_normal(8000)).astype("<i2").tobytes())
        lines.append(f"<s> clip number {i} </s> (c{i})")
    (root / "transcription").write_text("\n".join(lines) + "\n")
    out = base / "librivox"
    out.mkdir()
    counts = librivox.build_from_root(out, root)
    write_manifest(out, "librivox", librivox.VERSION, {}, counts)
    return base


def test_convert_then_eval_speech(tmp_path, data_dir, capsys):
    src, _ = S.tiny_ct2_dir(tmp_path / "ct2")
    ckpt = tmp_path / "ckpt"
    assert main(["convert", str(src), "--method", "residual", "--group-size", "2", "--rank", "4",
                 "--stacks", "encoder", "--out", str(ckpt)]) == 0
    assert (ckpt / "tokenizer.json").is_file()
    capsys.readouterr()
    assert main(["eval-speech", str(ckpt), "--data", "librivox", "--data-dir", str(data_dir),
                 "--max-new-tokens", "4", "--json", "--out", str(tmp_path / "wer.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    res = report["sets"]["librivox"]
    assert res["utterances"] == 5 and res["words"] == 15 and res["wer"] >= 0
    assert report["encoder_layer_params"] < report["encoder_params"]
    saved = json.loads((tmp_path / "wer.json").read_text())
    assert len(saved["sets"]["librivox"]["hypotheses"]) == 5
    assert main(["eval-speech", str(src), "--data", "librivox", "--data-dir", str(data_dir),
                 "--max-new-tokens", "2", "--limit", "2"]) == 0
    table = capsys.readouterr().out
    assert "| librivox | 2 |" in table


def test_eval_speech_errors(tmp_path, data_dir, capsys):
    gpt2 = tmp_path / "gpt2"
    T.gpt2().save_pretrained(gpt2)
    assert main(["eval-speech", str(gpt2), "--data", "librivox", "--data-dir", str(data_dir)]) == 2
    assert "not a Whisper" in capsys.readouterr().err
    assert main(["eval-speech", str(tmp_path / "missing"), "--data", "librivox",
                 "--data-dir", str(data_dir)]) == 2
    assert main(["eval-speech", "x", "--data", "timit"]) == 2
