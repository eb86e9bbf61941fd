"""The asr task: length buckets, a tiny recogniser that learns, resume, eval-speech."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from speech_helpers import fake_espeak_asr, tone_audio  # noqa: E402
from train_helpers import weights  # noqa: E402

from layershare.cli import main  # noqa: E402
from layershare.train import load_config, train  # noqa: E402
from layershare.train.asr import make_buckets  # noqa: E402
from layershare.train.trainer import Trainer  # noqa: E402


def asr_sets(data_dir, **train_kw):
    t = {"steps": 30, "batch_size": 1, "bucket_frames": 1200, "lr": 3e-3, "warmup": 3,
         "eval_every": 10, "save_every": 5, "log_every": 5, "eval_batches": 0, **train_kw}
    return (["data.name=espeak-asr", f"data.dir={data_dir}", "model.layers=2",
             "model.d_model=32", "model.heads=2", "model.conv_channels=8", "model.dropout=0.0"]
            + [f"train.{k}={v}" for k, v in t.items()])


@pytest.fixture(scope="module")
def asr_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    fake_espeak_asr(data)
    return data


def test_buckets_cover_every_utterance_once_within_budget():
    frames = [30, 500, 70, 70, 120, 1300, 10, 90, 400, 399]
    buckets = make_buckets(frames, budget=600)
    flat = sorted(u for b in buckets for u in b)
    assert flat == list(range(len(frames)))
    for b in buckets:
        assert len(b) == 1 or len(b) * max(frames[u] for u in b) <= 600
    shuffled = make_buckets(frames, budget=600, shuffle_seed=0)
    assert sorted(map(sorted, shuffled)) == sorted(map(sorted, buckets))
    assert shuffled == make_buckets(frames, budget=600, shuffle_seed=0)


def test_tiny_recogniser_learns_and_reports_wer_per_test_set(tmp_path, asr_data):
    out = tmp_path / "run"
    results = train(load_config(None, asr_sets(asr_data)), out, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert len(losses) == 6 and losses[-1] < 0.85 * losses[0], losses
    assert {"test_wer", "test-voices_wer", "test_loss"} <= set(results)
    assert results["task"] == "asr" and results["best_valid"]["metric"] == "wer"
    valid = [r["wer"] for r in rows if r["split"] == "valid"]
    assert len(valid) == 3 and results["best_valid"]["value"] == min(valid)
    hyps = [json.loads(x) for x in (out / "test.hyp.jsonl").read_text().splitlines()]
    assert len(hyps) == 8 and all(set(h) == {"ref", "hyp"} for h in hyps)
    assert json.loads((out / "tokenizer.json").read_text())["layershare_ctc_chars"][0] == "_"


def test_resume_equals_an_unbroken_run(tmp_path, asr_data, monkeypatch):
    sets = asr_sets(asr_data, steps=16, save_every=4, eval_every=8) + ["model.dropout=0.1"]
    train(load_config(None, sets), tmp_path / "whole", progress=False)

    real = Trainer.checkpoint

    def stop_after_step_8(self):
        real(self)
        if self.step == 8:
            raise KeyboardInterrupt  # as a kill right after the checkpoint landed
    monkeypatch.setattr(Trainer, "checkpoint", stop_after_step_8)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(None, sets), tmp_path / "broken", progress=False)
    monkeypatch.setattr(Trainer, "checkpoint", real)
    train(load_config(None, sets), tmp_path / "broken", progress=False)
    a = weights(tmp_path / "whole" / "checkpoints" / "last" / "model")
    b = weights(tmp_path / "broken" / "checkpoints" / "last" / "model")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_eval_speech_on_a_user_manifest_and_its_errors(tmp_path, asr_data, capsys):
    run = tmp_path / "run"
    train(load_config(None, asr_sets(asr_data, steps=4, eval_every=4, save_every=4)), run,
          progress=False)
    clips = tmp_path / "clips"
    clips.mkdir()
    import wave
    for name, text in (("a", "go left"), ("b", "stop")):
        with wave.open(str(clips / f"{name}.wav"), "wb") as w:  # 8 kHz stereo: resampled
            w.setnchannels(2), w.setsampwidth(2), w.setframerate(8000)
            mono = tone_audio(text, rate=8000)
            w.writeframes(torch.tensor(mono).repeat_interleave(2).numpy().tobytes())
    manifest = clips / "mine.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "go left"}\n'
                        '{"audio": "b.wav", "text": "Stop."}\n')
    assert main(["eval-speech", str(run), "--data", str(manifest), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    figures = result["sets"]["mine.jsonl"]
    assert figures["utterances"] == 2 and figures["words"] == 3 and figures["wer"] >= 0
    assert result["encoder_layer_params"] > 0

    (clips / "bad.wav").write_bytes(b"RIFF....not a wav")
    cases = {'{"audio": "missing.wav", "text": "go"}': "does not exist",
             '{"audio": "bad.wav", "text": "go"}': "not a readable WAV",
             '{"audio": "a.wav", "text": "  "}': "empty transcript",
             '{"audio": "../run/results.json", "text": "go"}': "outside the manifest",
             '["a.wav", "go"]': "expected",
             'not json': "not a JSON object"}
    for line, message in cases.items():
        manifest.write_text(line + "\n")
        assert main(["eval-speech", str(run), "--data", str(manifest)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (line, err)


def test_bad_input_is_one_line(tmp_path, asr_data, capsys):
    assert main(["data", "prepare", "espeak-asr", "--dir", str(tmp_path / "d"),
                 "--hours", "0", "--quiet"]) == 2
    assert "--hours" in capsys.readouterr().err
    assert main(["data", "prepare", "brown", "--dir", str(tmp_path / "d"), "--hours", "1"]) == 2
    assert "takes no option 'hours'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "data.name=espeak-en"]) == 2
    assert "speech test set" in capsys.readouterr().err
    lm = tmp_path / "lm"  # a run directory of another task is not a recogniser
    (lm / "model").mkdir(parents=True)
    (lm / "config.yaml").write_text("data: {name: brown}\n")
    assert main(["eval-speech", str(lm), "--data", "nope"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
