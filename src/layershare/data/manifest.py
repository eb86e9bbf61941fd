"""A user's own speech test set: a JSON-lines manifest of WAV files and their transcripts.

One object per line, ``{"audio": "clips/a.wav", "text": "the transcript"}`` (an ``id`` is
optional). ``audio`` is relative to the manifest's folder and must stay inside it after
symlinks are resolved: a manifest names files beside it, never elsewhere on the machine.
WAV files are PCM of 16 bits, mono or stereo (averaged), at any rate (resampled to 16 kHz).
Every problem is one line naming the manifest line: a missing or unreadable file, a line
that is not a JSON object, an empty transcript.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from ..errors import LayershareError
from .audio import SAMPLING_RATE, Utterance, resample

MAX_SECONDS = 600  # a test clip longer than 10 minutes is a mistake, not an utterance


def read_wav_any(path: Path) -> np.ndarray:
    """16 kHz float32 samples of a 16-bit PCM WAV (mono, or stereo averaged), any rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            if width != 2 or channels not in (1, 2):
                raise LayershareError(f"{path}: expected 16-bit PCM with 1 or 2 channels, got "
                                      f"{channels} channels of {8 * width} bits")
            if wav.getnframes() > MAX_SECONDS * rate:
                raise LayershareError(f"{path}: longer than {MAX_SECONDS} s")
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise LayershareError(f"{path}: not a readable WAV file ({exc})") from None
    # a truncated file can end inside a frame: numpy could not split it into samples/channels
    if len(frames) % (width * channels):
        raise LayershareError(f"{path}: truncated ({len(frames)} bytes of audio are not whole "
                              f"frames of {channels} x {8 * width} bits)")
    audio = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels == 2:
        audio = audio.reshape(-1, 2).mean(axis=1)
    if len(audio) == 0:
        raise LayershareError(f"{path}: no audio")
    return resample(audio, rate, SAMPLING_RATE)


def read_manifest_file(path: Path) -> list[Utterance]:
    """The utterances of a manifest (see the module doc), or a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise LayershareError(f"speech manifest {path} does not exist")
    root = path.parent.resolve()
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise LayershareError(f"{path}: not UTF-8 text ({exc.reason})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except ValueError:
            raise LayershareError(f"{where}: not a JSON object") from None
        if not isinstance(row, dict) or not isinstance(row.get("audio"), str) \
                or not isinstance(row.get("text"), str):
            raise LayershareError(f'{where}: expected {{"audio": "file.wav", "text": "..."}}')
        if not row["text"].strip():
            raise LayershareError(f"{where}: empty transcript")
        audio = (root / row["audio"]).resolve()
        if not audio.is_relative_to(root):
            raise LayershareError(f"{where}: {row['audio']!r} is outside the manifest's folder")
        if not audio.is_file():
            raise LayershareError(f"{where}: audio file {row['audio']!r} does not exist")
        out.append(Utterance(str(row.get("id", number)), row["text"],
                             read_wav_any(audio), {"audio": row["audio"]}))
    if not out:
        raise LayershareError(f"{path}: no utterances")
    return out
