"""Word error rate of a Whisper model on prepared speech splits.

``WER = (S + D + I) / N`` over the whole set (substitutions, deletions and insertions of
the word-level Levenshtein alignment, ``N`` reference words), computed by ``jiwer`` after
both sides pass Whisper's English text normaliser (transformers' ``EnglishTextNormalizer``:
lower case, no punctuation or fillers, "mr" -> "mister", numbers as digits, contractions
expanded). Its British -> American spelling table (``normalizer.json`` of openai/whisper) is
not installable offline, so that one step is skipped: "colour" and "color" differ here.

Audio goes through transformers' ``WhisperFeatureExtractor`` (80 log-mel bins, 25 ms
windows every 10 ms, padded to 30 s); text comes from ``generate()``, greedy unless
``beams > 1``, at most ``max_new_tokens`` tokens (default 128: the longest test sentence has
about 60), which bounds the cost of a model that loops ("I'm your host, I'm your host...")
instead of letting it run to Whisper's 448. Decoding time is the wall time of feature
extraction plus generation.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..errors import LayershareError

MAX_NEW_TOKENS = 128


def normalizer():
    """Whisper's English normaliser, without the spelling table (see the module doc)."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


def word_errors(references: list[str], hypotheses: list[str]) -> dict:
    """Corpus WER (in percent) and its S/D/I counts after normalisation.

    Utterances whose reference normalises to nothing are left out (WER is undefined there)
    and counted in ``skipped``.
    """
    from ..extras import require

    jiwer = require("jiwer")

    if len(references) != len(hypotheses):
        raise LayershareError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    norm = normalizer()
    pairs = [(norm(r), norm(h)) for r, h in zip(references, hypotheses)]
    kept = [(r, h) for r, h in pairs if r.strip()]
    if not kept:
        raise LayershareError("no reference has any word after normalisation")
    out = jiwer.process_words([r for r, _ in kept], [h for _, h in kept])
    words = out.substitutions + out.deletions + out.hits
    return {"wer": 100.0 * (out.substitutions + out.deletions + out.insertions) / words,
            "words": words, "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions, "skipped": len(pairs) - len(kept)}


def load_speech_model(src: str | os.PathLike):
    """``(model, tokenizer)`` of a short name, a CTranslate2 / transformers Whisper directory or
    a layershare checkpoint (``layershare.json``) of one, in eval mode."""
    from ..checkpoint import load
    from ..formats import whisper
    from ..formats.hub import from_local
    from ..formats.pretrained import resolve

    path = resolve(src)
    model = load(path) if (path / "layershare.json").is_file() else from_local(path)
    if getattr(model.config, "model_type", None) != "whisper":
        raise LayershareError(f"{src}: a {type(model).__name__}, not a Whisper speech recogniser")
    if getattr(model.config, "layershare_whisper", None):
        model.generation_config = whisper.generation_config(model.config)
    return model.eval(), whisper.tokenizer(path)


@torch.inference_mode()
def transcribe(model, tokenizer, audios, beams: int = 1, batch_size: int = 8,
               progress: bool = False, max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Text of each 16 kHz clip (float32 arrays of at most 30 s)."""
    from tqdm import tqdm

    from ..formats.whisper import SAMPLING_RATE, feature_extractor

    if beams < 1 or batch_size < 1:
        raise LayershareError(f"beams and batch size must be >= 1, got {beams}, {batch_size}")
    extractor = feature_extractor(model.config)
    dtype = next(model.parameters()).dtype
    out = []
    for i in tqdm(range(0, len(audios), batch_size), desc="decoding", unit="batch",
                  disable=not progress, leave=False):
        batch = [a for a in audios[i:i + batch_size]]
        long = [len(a) / SAMPLING_RATE for a in batch if len(a) > 30 * SAMPLING_RATE]
        if long:
            raise LayershareError(f"a clip of {long[0]:.1f} s: Whisper decodes at most 30 s")
        features = extractor(batch, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        ids = model.generate(features.input_features.to(dtype), num_beams=beams,
                             do_sample=False, max_new_tokens=max_new_tokens)
        out += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def first(utterances, limit: int | None) -> list:
    """The first ``limit`` utterances (all when None); one line if there are none."""
    if limit is not None:
        if limit < 1:
            raise LayershareError(f"--limit must be >= 1, got {limit}")
        utterances = utterances[:limit]
    if not utterances:
        raise LayershareError("no utterances to evaluate")
    return utterances


def wer_report(utterances, hyps: list[str], seconds: float) -> dict:
    """WER, S/D/I, counts, decoding time and real-time factor, every hypothesis."""
    audio = sum(u.seconds for u in utterances)
    return {**word_errors([u.text for u in utterances], hyps),
            "utterances": len(utterances), "audio_seconds": round(audio, 2),
            "decode_seconds": round(seconds, 3), "real_time_factor": round(seconds / audio, 5),
            "hypotheses": [{"id": u.id, "ref": u.text, "hyp": h} for u, h in zip(utterances, hyps)]}


def evaluate_wer(model, tokenizer, utterances, beams: int = 1, batch_size: int = 8,
                 limit: int | None = None, progress: bool = False,
                 max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """WER of ``model`` on ``utterances`` (:class:`~layershare.data.audio.Utterance`), the
    first ``limit`` of them when given; with decoding time and each hypothesis."""
    utterances = first(utterances, limit)
    start = time.perf_counter()
    hyps = transcribe(model, tokenizer, [u.audio for u in utterances], beams, batch_size, progress,
                      max_new_tokens)
    return {**wer_report(utterances, hyps, time.perf_counter() - start), "beams": beams,
            "max_new_tokens": max_new_tokens}


def encoder_params(model) -> dict:
    """Unique parameters of the Whisper encoder: its layer stack and the whole encoder
    (convolutional front end, positions and final norm included)."""
    encoder = model.model.encoder
    unique = lambda module: sum({id(p): p.numel() for p in module.parameters()}.values())  # noqa: E731
    return {"encoder_params": unique(encoder), "encoder_layer_params": unique(encoder.layers)}


def test_utterances(name: str, data_dir: Path | None = None, progress: bool = True):
    """The test utterances of a prepared speech recipe (``espeak-en``, ``librivox``)."""
    from ..data import load_splits

    if name not in ("espeak-en", "librivox"):
        raise LayershareError(f"unknown speech data {name!r}; choose espeak-en or librivox")
    return load_splits(name, data_dir, progress)["test"]
