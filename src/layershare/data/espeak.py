"""Synthetic English speech: LibreOffice help sentences spoken by espeak-ng (Debian).

Sentences come from the English side of the ``libreoffice-de-en`` recipe's *test* split,
whose help files no layershare model trains on, filtered to what a reader would say as
written: 4 to 25 words of letters and ordinary punctuation (no digits, paths, markup or
abbreviations with inner full stops). Each sentence is spoken once by ``espeak-ng`` with a
voice, accent variant, speed and pitch fixed by a hash of the sentence (8 English accents x
12 variants x 4 speeds x 4 pitches), resampled from 22.05 kHz to 16 kHz with libsoxr, and
stored as ``{split}.wav`` + ``{split}.jsonl`` (see :mod:`.audio`).

Sentences, not files, are split (by a hash of the sentence, with its own seed); the voice is
a function of the sentence, so re-preparing gives the same audio for the same espeak-ng. The
manifest records the espeak-ng version and the source recipe's manifest checksum; Debian
versions move, so nothing is pinned.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import LayershareError
from .audio import read_split, read_wav, resample, to_int16, write_split
from .fetch import require_tool, say, sha256_file
from .split import SPLITS, bucket, stable_unit

VERSION = 1
SOURCE = "libreoffice-de-en"
VALID, TEST = 0.10, 0.35           # fractions of sentences
MIN_TEST = 500
SEED = "layershare-espeak-v1"
# espeak-ng's own (non-MBROLA) English voices: accents of Britain, America and the Caribbean
VOICES = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
          "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SPEEDS = (140, 160, 175, 190)      # words per minute (espeak-ng's default is 175)
PITCHES = (35, 45, 55, 65)         # 0..99, default 50
_SPEAKABLE = re.compile(r"[A-Za-z][A-Za-z ,;:'?!()\-]*[.?!]?")


def speakable(sentence: str, low: int = 4, high: int = 25) -> bool:
    """Letters and ordinary punctuation only, a full stop only at the end, low..high words."""
    return bool(_SPEAKABLE.fullmatch(sentence)) and low <= len(sentence.split()) <= high


def choose_sentences(english: list[str]) -> list[str]:
    """The speakable sentences, each once, in source order."""
    seen, out = set(), []
    for text in english:
        text = " ".join(text.split())
        if speakable(text) and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def voice_of(sentence: str) -> dict:
    """The (voice, variant, speed, pitch) that speaks ``sentence``: fixed by its hash."""
    def pick(options, salt):
        return options[int(stable_unit(sentence, f"{SEED}-{salt}") * len(options))]
    return {"voice": pick(VOICES, "voice"), "variant": pick(VARIANTS, "variant"),
            "speed": pick(SPEEDS, "speed"), "pitch": pick(PITCHES, "pitch")}


def espeak_version(espeak: str) -> str:
    proc = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or f"unknown (exit {proc.returncode})"


def speak(espeak: str, sentence: str, voice: dict, work: Path, name: str):
    """``sentence`` spoken by espeak-ng as 16 kHz int16 samples. The text goes through stdin,
    never the command line, so a sentence cannot be read as an option."""
    wav = Path(work) / f"{name}.wav"
    argv = [espeak, "-b", "1", "-v", f"{voice['voice']}+{voice['variant']}",
            "-s", str(voice["speed"]), "-p", str(voice["pitch"]), "-w", str(wav), "--stdin"]
    proc = subprocess.run(argv, input=sentence.encode("utf-8"), capture_output=True, check=False)
    if proc.returncode != 0 or not wav.is_file():
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise LayershareError(f"espeak-ng failed on {sentence[:40]!r} with voice "
                              f"{voice['voice']}+{voice['variant']} "
                              f"({detail[-1] if detail else f'exit {proc.returncode}'})")
    audio, rate = read_wav(wav)
    wav.unlink()
    return to_int16(resample(audio, rate))


def build_from_sentences(out: Path, work: Path, sentences: list[str], progress: bool,
                         valid: float = VALID, test: float = TEST, workers: int = 2) -> dict:
    """Speak ``sentences``, split them and write the splits; counts for the manifest."""
    from tqdm import tqdm

    espeak = require_tool("espeak-ng")
    splits = {s: [] for s in SPLITS}
    for text in sentences:
        splits[bucket(text, valid, test, seed=SEED)].append(text)
    counts = {}
    work.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # espeak-ng runs as a subprocess
        for split, texts in splits.items():
            voices = [voice_of(t) for t in texts]
            jobs = pool.map(
                lambda args: speak(espeak, args[1], args[2], work, f"{split}-{args[0]}"),
                [(i, t, v) for i, (t, v) in enumerate(zip(texts, voices))])
            bar = tqdm(jobs, total=len(texts), desc=f"espeak-en {split}", unit="utt",
                       disable=not progress, leave=False)
            rows = ((f"{split}-{i:05d}", t, samples, v)
                    for i, (t, v, samples) in enumerate(zip(texts, voices, bar)))
            counts[split] = write_split(out, split, rows)
    return counts


def build(out: Path, work: Path, progress: bool, load_source) -> dict:
    """Sentences of the prepared LibreOffice test split, spoken, split by sentence.

    ``load_source(data_dir, progress)`` gives (English test paragraphs of SOURCE, the path of
    its manifest); the recipe registry passes it, so this module does not import the registry.
    """
    require_tool("espeak-ng")
    english, source_manifest = load_source(out.parent, progress)
    sentences = choose_sentences(english)
    say(progress, f"espeak-en: {len(sentences):,} speakable sentences of {len(english):,} "
                  f"{SOURCE} test paragraphs; speaking them")
    counts = build_from_sentences(out, work / "wav", sentences, progress)
    if counts["test"]["utterances"] < MIN_TEST:
        raise LayershareError(f"espeak-en: only {counts['test']['utterances']} test utterances "
                              f"(< {MIN_TEST}); the help packages changed, report it")
    source = {"espeak-ng": espeak_version(require_tool("espeak-ng")),
              "sentences": f"{SOURCE} test split (English side)",
              f"{SOURCE}/manifest.json sha256": sha256_file(source_manifest),
              "license": "text MPL-2.0 (LibreOffice help); audio made by espeak-ng (GPL-3.0)"}
    return {"source": source, "counts": counts}


def read(directory: Path) -> dict:
    """Utterances per split (:class:`~layershare.data.audio.Utterance`)."""
    return {split: read_split(Path(directory), split) for split in SPLITS}


def train_texts(directory: Path) -> list[str]:
    """Transcripts of the training split."""
    return [u.text for u in read_split(Path(directory), "train")]
