"""Word error rate of a CTC recogniser trained by layershare (:class:`SpeechEncoder`).

The counterpart of :mod:`.wer` (Whisper) for the ``asr`` task's models: frames from
:func:`~layershare.data.audio.log_mel`, greedy CTC decoding (or prefix beam search without a
language model), WER after the same normalisation and with the same jiwer alignment as
:func:`.wer.word_errors`, so the figures of both kinds of recogniser compare. The real-time
factor is decoding wall time (features + encoder + decoding) over audio seconds, with the
threads torch has (``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..errors import LayershareError


def is_ctc_model(path: str | os.PathLike) -> bool:
    """A ``layershare train`` run of the asr task, or a checkpoint of a SpeechEncoder."""
    return _checkpoint_dir(path) is not None


def _checkpoint_dir(path: str | os.PathLike) -> Path | None:
    """The SpeechEncoder checkpoint of ``path`` (itself or a run's ``model/``), else None."""
    from ..checkpoint import read_meta
    from ..formats.gate import is_run_directory

    path = Path(path)
    directory = path / "model" if is_run_directory(path) else path
    if not (directory / "layershare.json").is_file():
        return None
    base = read_meta(directory).get("base", {})
    return directory if isinstance(base, dict) and base.get("class") == "SpeechEncoder" \
        else None


def load_ctc_model(path: str | os.PathLike):
    """The recogniser of a run directory (``RUN/model``) or checkpoint, in eval mode."""
    from ..checkpoint import load
    from ..formats.gate import what_is

    directory = _checkpoint_dir(path)
    if directory is None:
        raise LayershareError(f"{path}: not a layershare speech recogniser (a run of the asr "
                              "task, or its model/ checkpoint)")
    return load(what_is(directory).model).eval()


@torch.inference_mode()
def transcribe(model, utterances, beam: int = 1,
               max_frames: int = 12000) -> tuple[list[str], float]:
    """Hypotheses for :class:`~layershare.data.audio.Utterance` s (batched by length) and
    the wall time it took."""
    import numpy as np

    from ..data.audio import log_mel
    from ..models.speech import beam_decode, greedy_decode

    if beam < 1:
        raise LayershareError(f"--beam must be >= 1, got {beam}")
    start = time.perf_counter()
    feats = [torch.from_numpy(log_mel(u.audio).astype(np.float32)) for u in utterances]
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
    out = [""] * len(feats)
    i = 0
    while i < len(order):
        longest = len(feats[order[i]])
        group = [order[i]]
        while i + len(group) < len(order):
            nxt = order[i + len(group)]
            if (len(group) + 1) * max(longest, len(feats[nxt])) > max_frames:
                break
            group.append(nxt)
            longest = max(longest, len(feats[nxt]))
        lengths = torch.tensor([len(feats[g]) for g in group])
        batch = torch.nn.utils.rnn.pad_sequence([feats[g] for g in group], batch_first=True)
        log_probs, out_lengths = model(batch, lengths)
        texts = greedy_decode(log_probs, out_lengths) if beam == 1 else \
            beam_decode(log_probs, out_lengths, beam)
        for g, text in zip(group, texts):
            out[g] = text
        i += len(group)
    return out, time.perf_counter() - start


def evaluate_ctc(model, utterances, beam: int = 1, limit: int | None = None) -> dict:
    """WER, S/D/I, decoding time and real-time factor of ``model`` on ``utterances``."""
    from .wer import first, wer_report

    utterances = first(utterances, limit)
    hyps, seconds = transcribe(model, utterances, beam)
    return {**wer_report(utterances, hyps, seconds), "beams": beam,
            "threads": torch.get_num_threads()}


def speech_sets(name: str, data_dir: Path | None = None, progress: bool = True) -> dict:
    """``{set name: utterances}`` for ``--data``: a recipe's test sets or a user manifest."""
    from ..data import load_splits, prepare
    from ..data.audio import read_split
    from ..data.manifest import read_manifest_file

    if name.endswith(".jsonl"):
        return {Path(name).name: read_manifest_file(Path(name))}
    if name == "espeak-asr":  # the test sets only: the training audio is hours long
        directory = prepare(name, data_dir, progress)
        return {f"espeak-asr/{s}": read_split(directory, s) for s in ("test", "test-voices")}
    if name in ("espeak-en", "librivox"):
        return {name: load_splits(name, data_dir, progress)["test"]}
    raise LayershareError(f"unknown speech data {name!r}; choose espeak-asr, espeak-en, "
                          "librivox or a FILE.jsonl manifest")
