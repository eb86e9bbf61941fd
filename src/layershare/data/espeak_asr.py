"""A speech-recognition *training* corpus: English sentences spoken by espeak-ng (Debian).

ResidualTransformer's claim is about a speech encoder trained from scratch, so this recipe
makes a corpus to train one on, offline, with test sets whose text and voices were never
seen in training:

* ``train``: speakable sentences (:func:`layershare.data.espeak.speakable`) from the English
  side of the ``libreoffice-de-en`` train split and from the World English Bible (Debian
  ``sword-text-web``, read with ``diatheke``; every book goes to train), shuffled by a stable
  hash and spoken until ``hours`` of audio are made, by the 6 training accents x 10 voice
  variants x 4 speeds x 4 pitches;
* ``valid``: the speakable sentences of the ``libreoffice-de-en`` valid split, training voices;
* ``test``: the ``espeak-en`` recipe's test sentences (held-out LibreOffice help files),
  training voices; ``test-voices``: the same sentences spoken by the 2 held-out accents
  with the 2 held-out voice variants, never used in training.

LibreOffice text is split by help file (that recipe's split), the Bible is train-only, and a
train sentence equal to any evaluation sentence is dropped, so no text leaks. Each
sentence's voice is fixed by a hash of the sentence, so re-preparing gives the same audio
for the same espeak-ng. Besides the audio (:mod:`.audio` layout), each split's 80-bin
log-mel features are computed once and stored as ``{split}.mel.npy`` (float16, all
utterances one after another; ``mel_start``/``mel_frames`` in the index), so training never
recomputes them. The manifest checksums both.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import LayershareError
from . import espeak
from .audio import N_MELS, SAMPLING_RATE, log_mel, read_split, write_split
from .fetch import apt_download, deb_extract, deb_version, require_tool, say, sha256_file
from .split import bucket, stable_unit

VERSION = 1
SPLITS = ("train", "valid", "test", "test-voices")
SEED = "layershare-espeak-asr-v1"
DEFAULT_HOURS = 20.0
HELD_OUT_ACCENTS = ("en-gb-scotland", "en-029")
HELD_OUT_VARIANTS = ("m7", "f5")
TRAIN_ACCENTS = tuple(v for v in espeak.VOICES if v not in HELD_OUT_ACCENTS)
TRAIN_VARIANTS = tuple(v for v in espeak.VARIANTS if v not in HELD_OUT_VARIANTS)
BIBLE_PACKAGE, BIBLE_MODULE = "sword-text-web", "engWEB2015eb"
_VERSE = re.compile(r"^(?:[1-3] )?[A-Z][A-Za-z ]+ \d+:\d+: (.*)$")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": None, "\u201d": None,
                         '"': None, "\u2014": ", "})


def bible_sentences(plain: str) -> list[str]:
    """Speakable verses of ``diatheke -f plain`` output: lines ``Book C:V: text`` only
    (the glossary after Revelation has no reference), quotes removed, curly apostrophes
    made plain, words the module's markup glued together ("bornSon") split again."""
    out = []
    for line in plain.splitlines():
        match = _VERSE.match(line.strip())
        if match:
            text = re.sub(r"([a-z])([A-Z])", r"\1 \2", match.group(1).translate(_QUOTES))
            out.append(" ".join(text.replace(" ,", ",").split()))
    return espeak.choose_sentences(out)


def read_bible(work: Path, progress: bool) -> tuple[list[str], dict]:
    """The WEB verses, read by ``diatheke`` from the unpacked (never installed) package."""
    import subprocess

    diatheke = require_tool("diatheke")
    say(progress, f"espeak-asr: apt-get download {BIBLE_PACKAGE}")
    deb = apt_download([BIBLE_PACKAGE], work / "debs")[BIBLE_PACKAGE]
    root = deb_extract(deb, work / "sword") / "usr" / "share" / "sword"
    env = {**os.environ, "SWORD_PATH": str(root), "HOME": str(work)}
    proc = subprocess.run([diatheke, "-b", BIBLE_MODULE, "-f", "plain", "-k",
                           "Genesis 1:1-Revelation 22:21"], capture_output=True, env=env,
                          check=False, stdin=subprocess.DEVNULL)
    text = proc.stdout.decode("utf-8", "replace")
    verses = bible_sentences(text)
    if proc.returncode != 0 or len(verses) < 1000:
        raise LayershareError(f"diatheke read only {len(verses)} speakable verses of "
                              f"{BIBLE_MODULE} (exit {proc.returncode}); report it")
    return verses, {"version": deb_version(deb), "sha256": sha256_file(deb)}


def voice_for(sentence: str, held_out: bool = False) -> dict:
    """The voice that speaks ``sentence``: training voices, or the held-out ones."""
    accents = HELD_OUT_ACCENTS if held_out else TRAIN_ACCENTS
    variants = HELD_OUT_VARIANTS if held_out else TRAIN_VARIANTS
    salt = "held-out" if held_out else "train"

    def pick(options, name):
        return options[int(stable_unit(sentence, f"{SEED}-{salt}-{name}") * len(options))]
    return {"voice": pick(accents, "voice"), "variant": pick(variants, "variant"),
            "speed": pick(espeak.SPEEDS, "speed"), "pitch": pick(espeak.PITCHES, "pitch")}


def espeak_en_test(lo_test_english: list[str]) -> list[str]:
    """The ``espeak-en`` recipe's test sentences, derived as that recipe derives them."""
    return [t for t in espeak.choose_sentences(lo_test_english)
            if bucket(t, espeak.VALID, espeak.TEST, seed=espeak.SEED) == "test"]


def plan(lo: dict, bible: list[str]) -> dict[str, list[str]]:
    """Sentences per split (see the module doc); train in a stable shuffled order."""
    test = espeak_en_test([en for _, en in lo["test"]])
    valid = espeak.choose_sentences([en for _, en in lo["valid"]])
    held = {t.lower() for t in test + valid}
    pool = espeak.choose_sentences([en for _, en in lo["train"]] + bible)
    train = sorted((t for t in pool if t.lower() not in held),
                   key=lambda t: stable_unit(t, SEED))
    return {"train": train, "valid": valid, "test": test, "test-voices": list(test)}


def speak_split(out: Path, work: Path, split: str, texts: list[str], seconds: float | None,
                progress: bool, workers: int = 2) -> dict:
    """Speak ``texts`` (stop once ``seconds`` of audio are made, if given), write the
    split's audio, index and log-mel features; counts for the manifest."""
    from tqdm import tqdm

    tool = require_tool("espeak-ng")
    held_out = split == "test-voices"
    work.mkdir(parents=True, exist_ok=True)
    mels: list[np.ndarray] = []
    bar = tqdm(total=round(seconds) if seconds else len(texts), desc=f"espeak-asr {split}",
               unit="s" if seconds else "utt", disable=not progress, leave=False)

    def rows():
        made, frames, chunk = 0.0, 0, 256
        with ThreadPoolExecutor(max_workers=workers) as pool:  # espeak-ng: a subprocess
            for start in range(0, len(texts), chunk):
                batch = [(i, t, voice_for(t, held_out))
                         for i, t in enumerate(texts[start:start + chunk], start)]
                spoken = pool.map(lambda a: espeak.speak(tool, a[1], a[2], work, f"{split}-{a[0]}"),
                                  batch)
                for (i, text, voice), samples in zip(batch, spoken):
                    mel = log_mel(samples.astype(np.float32) / 32768.0).astype(np.float16)
                    mels.append(mel)
                    yield (f"{split}-{i:05d}", text, samples,
                           {**voice, "mel_start": frames, "mel_frames": len(mel)})
                    frames += len(mel)
                    made += len(samples) / SAMPLING_RATE
                    bar.update(round(len(samples) / SAMPLING_RATE) if seconds else 1)
                    if seconds and made >= seconds:
                        return
    counts = write_split(out, split, rows())
    bar.close()
    np.save(out / f"{split}.mel.npy", np.concatenate(mels) if mels else
            np.zeros((0, N_MELS), np.float16))
    return counts


def build(out: Path, work: Path, progress: bool, load_source, hours: float = DEFAULT_HOURS) -> dict:
    """Prepare the corpus; ``load_source(data_dir, progress)`` gives the prepared
    ``libreoffice-de-en`` splits and its manifest path (the registry passes it)."""
    if not (isinstance(hours, (int, float)) and 0 < hours <= 1000):
        raise LayershareError(f"--hours must be a number in (0, 1000], got {hours!r}")
    require_tool("espeak-ng")
    lo, lo_manifest = load_source(out.parent, progress)
    bible, bible_source = read_bible(work, progress)
    sentences = plan(lo, bible)
    say(progress, f"espeak-asr: {len(sentences['train']):,} candidate train sentences "
                  f"({len(bible):,} verses), {len(sentences['valid']):,} valid, "
                  f"{len(sentences['test']):,} test; speaking up to {hours:g} h of train audio")
    counts = {}
    for split in SPLITS:
        counts[split] = speak_split(out, work / "wav", split, sentences[split],
                                    hours * 3600 if split == "train" else None, progress)
    if counts["test"]["utterances"] < espeak.MIN_TEST:
        raise LayershareError(f"espeak-asr: only {counts['test']['utterances']} test "
                              f"utterances (< {espeak.MIN_TEST}); report it")
    source = {"espeak-ng": espeak.espeak_version(require_tool("espeak-ng")), "hours": hours,
              "libreoffice-de-en/manifest.json sha256": sha256_file(lo_manifest),
              BIBLE_PACKAGE: bible_source, "train accents": list(TRAIN_ACCENTS),
              "held-out accents": list(HELD_OUT_ACCENTS),
              "held-out variants": list(HELD_OUT_VARIANTS),
              "features": f"{N_MELS}-bin log-mel, 25 ms / 10 ms, float16 ({{split}}.mel.npy)",
              "license": "text MPL-2.0 (LibreOffice help), public domain (WEB); audio made "
                         "by espeak-ng (GPL-3.0)"}
    return {"source": source, "counts": counts}


def read(directory: Path) -> dict:
    """Utterances per split (:class:`~layershare.data.audio.Utterance`)."""
    return {split: read_split(Path(directory), split) for split in SPLITS}


def read_features(directory: Path, split: str) -> tuple[np.ndarray, list[dict]]:
    """A split's log-mel features (memory-mapped, float16) and its index rows (``text``,
    ``mel_start``, ``mel_frames``, voice...), without reading the audio."""
    import json

    directory = Path(directory)
    mel = np.load(directory / f"{split}.mel.npy", mmap_mode="r", allow_pickle=False)
    rows = [json.loads(line) for line in
            (directory / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    for row in rows:
        if row["mel_start"] + row["mel_frames"] > len(mel):
            raise LayershareError(f"{directory}/{split}.jsonl points past the end of "
                                  f"{split}.mel.npy; prepare the recipe again")
    return mel, rows


def train_texts(directory: Path) -> list[str]:
    return [row["text"] for row in read_features(directory, "train")[1]]
