"""Speech splits on disk: one 16 kHz WAV per split plus a JSON-lines index beside it.

``{split}.wav`` is a plain mono 16-bit PCM WAV holding the split's utterances one after the
other (any audio tool plays it); ``{split}.jsonl`` has one line per utterance: ``id``,
``text`` (the transcript), ``start`` and ``samples`` (where it lies in the WAV, in samples)
and whatever else the recipe records (voice, speed...). Two files per split keep the
manifest short and its checksums meaningful, where thousands of small WAVs would not.
"""

from __future__ import annotations

import functools
import json
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LayershareError

SAMPLING_RATE = 16_000


@dataclass(frozen=True)
class Utterance:
    """One utterance: its id, transcript, 16 kHz float32 samples in [-1, 1] and extras."""

    id: str
    text: str
    audio: np.ndarray = field(repr=False)
    meta: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLING_RATE


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit PCM (clipped, rounded)."""
    scaled = np.round(np.asarray(audio, dtype=np.float64) * 32767)
    return np.clip(scaled, -32768, 32767).astype("<i2")


def write_split(directory: Path, split: str, utterances) -> dict:
    """Write ``utterances`` (``(id, text, int16 samples at 16 kHz, extra dict)``) as
    ``{split}.wav`` + ``{split}.jsonl``; returns counts for the manifest."""
    directory = Path(directory)
    start, n, words = 0, 0, 0
    with wave.open(str(directory / f"{split}.wav"), "wb") as wav, \
            open(directory / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as index:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLING_RATE)
        for uid, text, samples, extra in utterances:
            samples = np.asarray(samples, dtype="<i2")
            wav.writeframes(samples.tobytes())
            row = {"id": uid, "text": text, "start": start, "samples": int(len(samples)), **extra}
            index.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            start += len(samples)
            n += 1
            words += len(text.split())
    return {"utterances": n, "words": words, "seconds": round(start / SAMPLING_RATE, 1)}


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A mono 16-bit PCM WAV as float32 samples in [-1, 1], and its sampling rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise LayershareError(f"{path}: expected mono 16-bit PCM, got "
                                      f"{wav.getnchannels()} channels of "
                                      f"{8 * wav.getsampwidth()} bits")
            rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise LayershareError(f"{path}: not a readable WAV file ({exc})") from None
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


def read_split(directory: Path, split: str) -> list[Utterance]:
    """The utterances of one split of a prepared speech directory."""
    directory = Path(directory)
    audio, rate = read_wav(directory / f"{split}.wav")
    if rate != SAMPLING_RATE:
        raise LayershareError(f"{directory}/{split}.wav is {rate} Hz, expected {SAMPLING_RATE}")
    out = []
    for line in (directory / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        start, n = int(row.pop("start")), int(row.pop("samples"))
        if start + n > len(audio):
            raise LayershareError(f"{directory}/{split}.jsonl points past the end of "
                                  f"{split}.wav; prepare the recipe again")
        uid, text = row.pop("id"), row.pop("text")
        out.append(Utterance(uid, text, audio[start:start + n], row))
    return out


def resample(audio: np.ndarray, rate: int, target: int = SAMPLING_RATE) -> np.ndarray:
    """``audio`` at ``target`` Hz, by libsoxr's high-quality polyphase filter (PyPI ``soxr``)."""
    if rate == target:
        return np.asarray(audio, dtype=np.float32)
    try:
        import soxr
    except ImportError:
        raise LayershareError("resampling needs the soxr package: pip install "
                              "'layershare[speech]'") from None
    return soxr.resample(np.asarray(audio, dtype=np.float32), rate, target, quality="HQ")


# -- log-mel features ---------------------------------------------------------------------
N_MELS, N_FFT, HOP = 80, 400, 160   # 80 bins; 25 ms windows every 10 ms at 16 kHz


def mel_frames(samples: int) -> int:
    """Frames :func:`log_mel` gives for ``samples`` samples (a centred STFT: one per hop + 1)."""
    return samples // HOP + 1


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) natural-log mel energies of 16 kHz ``audio``, float32.

    A Hann-windowed STFT (25 ms / 10 ms, centred), its power spectrum, 80 Slaney mel filters
    up to 8 kHz (transformers' ``mel_filter_bank``, as Whisper's feature extractor uses) and
    ``log(max(x, 1e-10))``. Normalisation is left to the model (:mod:`layershare.models.speech`
    normalises each utterance), so the cached features are the plain physical quantity.
    """
    import torch

    wave_ = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if len(wave_) < 2:
        wave_ = torch.nn.functional.pad(wave_, (0, 2 - len(wave_)))
    spec = torch.stft(wave_, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True,
                      return_complex=True).abs().pow(2)               # (freq, frames)
    mel = (spec.T @ _mel_filters()).clamp_min(1e-10).log()
    return mel[: mel_frames(len(audio))].numpy()


@functools.lru_cache(maxsize=1)
def _mel_filters():
    """(201 frequencies, 80 mels) Slaney filters, built once per process."""
    import torch
    from transformers.audio_utils import mel_filter_bank

    return torch.from_numpy(mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=N_MELS, min_frequency=0.0,
        max_frequency=SAMPLING_RATE / 2, sampling_rate=SAMPLING_RATE, norm="slaney",
        mel_scale="slaney")).float()
