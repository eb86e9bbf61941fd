"""Real read speech: the five LibriVox clips of Debian ``pocketsphinx-testdata``.

Five sentences of *Sense and Sensibility* (chapter 1, public domain recording) at 16 kHz
with CMU Sphinx's transcripts, lower case, disfluencies as spoken ("a more a amiable").
A smoke test of real speech, too small for anything else. The package is fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x`` (never installed); only a ``test``
split is written, in the format of :mod:`.audio`.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import LayershareError
from .audio import SAMPLING_RATE, read_split, read_wav, resample, to_int16, write_split
from .fetch import FetchError, apt_download, deb_extract, deb_version, say, sha256_file

VERSION = 1
PACKAGE = "pocketsphinx-testdata"
ROOT = "usr/share/pocketsphinx/test/data/librivox"
CLIPS = 5
_LINE = re.compile(r"<s>\s*(.*?)\s*</s>\s*\(([^()]+)\)")


def parse_transcription(text: str) -> dict[str, str]:
    """``{clip id: transcript}`` from Sphinx's ``<s> words </s> (id)`` lines."""
    out = {}
    for line in text.splitlines():
        if line.strip():
            match = _LINE.fullmatch(line.strip())
            if not match:
                raise FetchError(f"{PACKAGE}: unexpected transcription line {line[:60]!r}; "
                                 "the package layout changed, report it")
            out[match.group(2)] = " ".join(match.group(1).split())
    return out


def build_from_root(out: Path, root: Path) -> dict:
    """Write the ``test`` split from an unpacked ``.../librivox`` directory."""
    transcripts = parse_transcription((root / "transcription").read_text(encoding="utf-8"))
    rows = []
    for uid in sorted(transcripts):
        audio, rate = read_wav(root / f"{uid}.wav")
        rows.append((uid, transcripts[uid], to_int16(resample(audio, rate, SAMPLING_RATE)),
                     {"sha256_source_wav": sha256_file(root / f"{uid}.wav")}))
    if len(rows) != CLIPS:
        raise LayershareError(f"{PACKAGE}: expected {CLIPS} clips, found {len(rows)}; report it")
    return {"test": write_split(out, "test", rows)}


def build(out: Path, work: Path, progress: bool) -> dict:
    say(progress, f"librivox: apt-get download {PACKAGE}")
    deb = apt_download([PACKAGE], work / "debs")[PACKAGE]
    root = deb_extract(deb, work / "x") / ROOT
    if not (root / "transcription").is_file():
        raise FetchError(f"{PACKAGE} has no {ROOT}/transcription: the package layout changed; "
                         "report it")
    counts = build_from_root(out, root)
    source = {PACKAGE: {"version": deb_version(deb), "sha256": sha256_file(deb)},
              "license": "recordings: LibriVox, public domain; package: BSD-2-Clause"}
    return {"source": source, "counts": counts}


def read(directory: Path) -> dict:
    return {"test": read_split(Path(directory), "test")}


def train_texts(directory: Path) -> list[str]:
    raise LayershareError("librivox is a five-clip test set: it has no training split")
