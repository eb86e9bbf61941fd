"""WER after Whisper's normalisation; decoding; converted Whisper at full rank = original."""

import shutil

import numpy as np
import pytest
import speech_helpers as S
import torch
from requirements import ESPEAK, need, need_module, need_tool

import layershare
from layershare.data.audio import Utterance
from layershare.errors import LayershareError
from layershare.evaluate.wer import (
    encoder_params,
    evaluate_wer,
    load_speech_model,
    transcribe,
    word_errors,
)

need_module("jiwer", "speech")


def test_hand_made_pair():
    refs = ["The cat sat on the mat.", "Mr. Smith isn't here", "red green blue black"]
    hyps = ["the cat sat on a mat", "mister smith is not here", "red blue black white pink"]
    out = word_errors(refs, hyps)
    # 6 + 5 + 4 = 15 reference words; errors: 1 sub ("a"), 0, 1 del ("green") + 2 ins
    assert out["words"] == 15
    assert (out["substitutions"], out["deletions"], out["insertions"]) == (1, 1, 2)
    assert out["wer"] == pytest.approx(100 * 4 / 15)
    assert word_errors(["Hello, World!"], ["hello world"])["wer"] == 0.0


def test_empty_reference_is_skipped_and_lengths_checked():
    out = word_errors(["uh", "yes"], ["anything", "yes"])  # "uh" is a filler: nothing left
    assert out["skipped"] == 1 and out["wer"] == 0.0
    with pytest.raises(LayershareError, match="2 references but 1 hypotheses"):
        word_errors(["a", "b"], ["a"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory, _ = S.tiny_ct2_dir(tmp_path_factory.mktemp("ct2") / "tiny")
    return directory


def _clips(n=2, seconds=1.5):
    g = np.random.default_rng(0)
    return [0.1 * g.standard_normal(int(16000 * seconds)).astype(np.float32) for _ in range(n)]


def test_evaluate_wer_reports_and_rejects_long_clips(tiny):
    model, tok = load_speech_model(tiny)
    utts = [Utterance(f"u{i}", "hello there", a) for i, a in enumerate(_clips(3))]
    out = evaluate_wer(model, tok, utts, batch_size=2, limit=2, max_new_tokens=5)
    assert out["utterances"] == 2 and out["words"] == 4 and len(out["hypotheses"]) == 2
    assert out["decode_seconds"] > 0 and out["audio_seconds"] == pytest.approx(3.0)
    with pytest.raises(LayershareError, match="at most 30 s"):
        transcribe(model, tok, [np.zeros(16000 * 31, np.float32)])
    with pytest.raises(LayershareError, match="limit must be >= 1"):
        evaluate_wer(model, tok, utts, limit=0)


def _same_transcripts(model, tok, clips, **convert):
    ids_before = transcribe(model, tok, clips, max_new_tokens=20)
    layershare.convert(model, **convert)
    ids_after = transcribe(model, tok, clips, max_new_tokens=20)
    return ids_before, ids_after


@pytest.mark.parametrize("stacks", ["encoder", "all"])
def test_full_rank_conversion_transcribes_the_same_tiny(tiny, stacks):
    model, tok = load_speech_model(tiny)
    before, after = _same_transcripts(model, tok, _clips(), method="residual", group_size=2,
                                      rank=32, stacks=stacks)
    assert before == after and any(before)


def test_checkpoint_of_converted_whisper_decodes_the_same(tiny, tmp_path):
    model, tok = load_speech_model(tiny)
    layershare.convert(model, method="lowrank", group_size=2, rank=4, stacks="encoder")
    layershare.save(model, tmp_path / "ckpt")
    shutil.copy2(tiny / "tokenizer.json", tmp_path / "ckpt" / "tokenizer.json")
    again, tok2 = load_speech_model(tmp_path / "ckpt")
    assert again.layershare_config.stacks == "encoder"
    clips = _clips()
    assert transcribe(model, tok, clips, max_new_tokens=10) == transcribe(again, tok2, clips,
                                                                          max_new_tokens=10)
    assert encoder_params(again)["encoder_layer_params"] < encoder_params(
        load_speech_model(tiny)[0])["encoder_layer_params"]


def test_full_rank_conversion_transcribes_the_same_real(tmp_path):
    """The real Whisper tiny.en, its encoder converted at full rank (residual, K=2), on a
    sentence spoken by espeak-ng: the same words as the original."""
    real, why = S.real_model_dir()
    need("whisper", real is not None, why)
    need_tool("espeak-ng", ESPEAK)
    from layershare.data.espeak import speak
    clip = speak(shutil.which("espeak-ng"), "Select the text and press enter.",
                 {"voice": "en-us", "variant": "m3", "speed": 160, "pitch": 50}, tmp_path, "c")
    model, tok = load_speech_model("whisper-tiny-en")
    before, after = _same_transcripts(model, tok, [clip.astype(np.float32) / 32768],
                                      method="residual", group_size=2, rank=384,
                                      stacks="encoder")
    assert before == after
    assert "enter" in before[0].lower()
    torch.manual_seed(0)
