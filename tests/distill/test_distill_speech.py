"""``layershare distill`` of a compressed Whisper encoder on espeak-en features
(train/distill_speech.py): the loss falls, only the encoder moves, bad input is refused."""

import json

import pytest
import speech_helpers as S
import torch

from layershare.cli import main
from layershare.evaluate.wer import load_speech_model


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper")
    data = S.write_espeak_data(root / "data")
    torch.manual_seed(0)  # the tiny model's weights: one fixed draw
    teacher, _ = S.tiny_ct2_dir(root / "teacher")
    student = root / "student"
    assert main(["compress", str(teacher), "--stacks", "encoder", "--method", "residual",
                 "--group-size", "2", "--rank", "0", "--calib", "none", "--quiet",
                 "--out", str(student)]) == 0
    return {"teacher": str(teacher), "student": str(student), "data": str(data)}


def _args(w, out, *extra, steps=8):
    return ["distill", w["student"], "--teacher", w["teacher"], "--data", "espeak-en",
            "--steps", str(steps), "--batch-size", "2", "--eval-every", "4", "--save-every", "4",
            "--eval-batches", "1", "--lr", "1e-3", "--set", f"data.dir={w['data']}",
            "--set", "distill.eval_sentences=2", "--quiet", "--out", str(out), *extra]


@pytest.mark.parametrize("trainable", ["lowrank", "all"])
def test_speech_distillation_moves_the_encoder_towards_the_teacher(tmp_path, whisper, trainable):
    out = tmp_path / "dist"
    assert main(_args(whisper, out, "--trainable", trainable)) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["task"] == "distill-speech" and r["protocol"].startswith("espeak-en test split")
    assert r["after"]["mse"] < r["before"]["mse"]
    assert r["after"]["cosine"] > r["before"]["cosine"]
    assert r["teacher_test"]["mse"] == pytest.approx(0.0, abs=1e-10)
    before, _ = load_speech_model(whisper["student"])
    after, _ = load_speech_model(out / "model")
    b, a = before.state_dict(), after.state_dict()
    moved = [k for k in b if not torch.equal(a[k], b[k])]
    assert moved and all(k.startswith("model.encoder.") for k in moved)


@pytest.mark.parametrize("case, message", [
    ("brown", "a Whisper model distils on speech"),
    ("train", "is a speech test set: train a recogniser on data.name=espeak-asr"),
])
def test_bad_speech_distillation_is_one_line(tmp_path, whisper, capsys, case, message):
    out = tmp_path / "bad"
    if case == "brown":
        argv = _args(whisper, out)
        argv[argv.index("espeak-en")] = "brown"
    else:
        argv = ["train", "--set", "data.name=espeak-en", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("layershare: error:")
    assert not out.exists()
