"""Calibrated compression of a Whisper encoder from log-mel features (compress/speech.py).

A tiny random Whisper in CTranslate2's layout and a small espeak-en preparation (synthetic
voiced clips, the recipe's file layout and a real manifest; tests/speech_helpers.py), so the
tests need neither espeak-ng nor the registries.
"""

import copy

import pytest
import speech_helpers as S
import tiny_models as T
import torch

import layershare
from layershare.cli import main
from layershare.compress import compress
from layershare.compress.calibrate import GramCollector
from layershare.compress.speech import speech_batches, train_utterances
from layershare.errors import LayershareError
from layershare.evaluate.wer import load_speech_model
from layershare.slots import Slot


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return S.write_espeak_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory, _ = S.tiny_ct2_dir(tmp_path_factory.mktemp("ct2") / "tiny")
    return directory


def _features(model, data_dir, frames=6 * 1500, batch_size=3):
    return speech_batches(model, train_utterances("espeak-en", data_dir), frames, batch_size)


def _encode(model, batches):
    with torch.no_grad():
        return [model.model.encoder(b["input_features"]).last_hidden_state for b in batches]


def test_batches_count_encoder_frames_and_spread_over_the_split(tiny, data_dir):
    model, _ = load_speech_model(tiny)
    batches = _features(model, data_dir, frames=3001, batch_size=2)  # 3001 frames: 3 clips
    assert [b["input_features"].shape for b in batches] == [(2, 80, 3000), (1, 80, 3000)]
    with pytest.raises(LayershareError, match="asks for 7 utterances"):
        _features(model, data_dir, frames=6 * 1500 + 1)


def test_calibrated_encoder_compress_runs_from_features(tiny, data_dir, tmp_path, capsys):
    out = tmp_path / "small"
    assert main(["compress", str(tiny), "--stacks", "encoder", "--method", "residual",
                 "--group-size", "2", "--keep", "0.6", "--calib", "espeak-en",
                 "--calib-tokens", "4500", "--data-dir", str(data_dir), "--quiet",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 utterances of espeak-en train, 4,500 encoder frames" in printed
    assert "fc1" in printed  # the whitened errors of the fit are reported
    small, _ = load_speech_model(out)
    converted = [m for m in small.model.encoder.modules() if type(m).__name__ == "ResidualLinear"]
    assert converted and not any(type(m).__name__ == "ResidualLinear"
                                 for m in small.model.decoder.modules())


def test_calibrated_decoder_compress_reads_transcripts(tiny, data_dir, tmp_path, capsys):
    out = tmp_path / "both"
    assert main(["compress", str(tiny), "--stacks", "all", "--method", "lowrank",
                 "--keep", "0.6", "--calib-tokens", "4500", "--data-dir", str(data_dir),
                 "--quiet", "--out", str(out)]) == 0  # espeak-en is a Whisper model's default
    assert "encoder_attn.k_proj" in capsys.readouterr().out


@pytest.mark.parametrize("method, k", [("lowrank", 1), ("residual", 2)])
def test_full_rank_calibrated_encoder_is_exact(tiny, data_dir, method, k):
    model, _ = load_speech_model(tiny)
    batches = _features(model, data_dir)
    reference = _encode(model, batches)
    full = model.config.d_model  # rank d: every encoder matrix (d x d, 2d x d, d x 2d) exact
    result = compress(model, batches, method=method, group_size=k, rank=full, stacks="encoder",
                      progress=False)
    assert result.calib_tokens == 6 * 1500
    # fp32 through a Cholesky whitening and 4 layers: ~1e-5 absolute (1.2e-5 seen on one
    # machine), where any truncation would differ by ~1e-1
    for got, want in zip(_encode(model, batches), reference):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def _data_error(dense, compressed, batches) -> dict[str, float]:
    """``||(W - W') X^T||_F^2`` per encoder matrix, X its inputs in the dense model."""
    layers = dense.model.encoder.layers
    names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
             "fc1", "fc2"]
    slots = [(f"{l}.{n}", Slot(layers[l], n)) for l in range(len(layers)) for n in names]
    with GramCollector([s.module for _, s in slots]) as grams:
        _encode(dense, batches)
    merged = layershare.merge(compressed, inplace=False).model.encoder.layers
    out = {}
    for key, slot in slots:
        l, name = key.split(".", 1)
        E = (slot.weight() - Slot(merged[int(l)], name).weight()).detach().double()
        out[key] = float(((E @ grams.gram(slot.module)) * E).sum())
    return out


@pytest.mark.parametrize("method, k", [("lowrank", 1), ("residual", 2)])
def test_whitened_fit_beats_data_free_in_the_data_metric(tiny, data_dir, method, k):
    dense, _ = load_speech_model(tiny)
    batches = _features(dense, data_dir)
    kwargs = dict(method=method, group_size=k, rank=4, stacks="encoder", progress=False)
    # not sequential: every matrix is fitted to the dense model's inputs, the X measured here
    calibrated = compress(copy.deepcopy(dense), batches, sequential=False, **kwargs).model
    free = compress(copy.deepcopy(dense), None, **kwargs).model
    fit, plain = _data_error(dense, calibrated, batches), _data_error(dense, free, batches)
    assert sum(fit.values()) < 0.9 * sum(plain.values())
    if method == "lowrank":  # SVD-LLM is the optimum of this metric, matrix by matrix
        assert all(fit[key] <= plain[key] * (1 + 1e-6) for key in fit)


def test_bad_speech_calibration_is_one_line_and_no_output(tiny, data_dir, tmp_path, capsys):
    llama = tmp_path / "llama"
    T.llama().save_pretrained(llama)
    cases = [([str(tiny), "--data-dir", str(tmp_path / "nothing")],
              "espeak-en is not prepared in"),
             ([str(tiny), "--calib", "brown", "--data-dir", str(data_dir)],
              "calibrates on speech"),
             ([str(tiny), "--calib", "librivox", "--data-dir", str(data_dir)],
              "calibrates on speech"),
             ([str(tiny), "--calib-tokens", "100000", "--data-dir", str(data_dir)],
              "asks for 67 utterances"),
             ([str(llama), "--calib", "espeak-en"], "espeak-en is speech")]
    out = tmp_path / "out"
    for args, message in cases:
        assert main(["compress", *args, "--method", "residual", "--keep", "0.6", "--quiet",
                     "--out", str(out)]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("layershare: error:")
        assert not out.exists()
