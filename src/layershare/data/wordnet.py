"""WordNet supersense classification (Debian ``wordnet-base``): gloss -> one of 45 classes.

Each synset line of ``data.{noun,verb,adj,adv}`` reads ``offset lex_filenum ss_type ...
| gloss``; the two-digit lexicographer file number is the synset's *supersense*
(noun.act, verb.motion, ...). The text is the whole gloss (definition plus any quoted
examples), whitespace squeezed. Synsets whose gloss also appears under another synset are
kept once per (label, gloss); a gloss seen with two labels is dropped, since the label
would be a coin toss. Synsets are split ~80/10/10 stratified by label, by hash of
``pos:offset`` (classes range from ~40 to ~11,000 glosses, so every class is in every split).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import LayershareError
from .fetch import FetchError, apt_download, deb_extract, deb_version, say, sha256_file
from .helphtml import squeeze
from .split import SPLITS, stratified_split
from .store import read_lines, write_lines

PACKAGE = "wordnet-base"
DATA_ROOT = "usr/share/wordnet"
POS_FILES = ("noun", "verb", "adj", "adv")
VERSION = 1
FILES = {split: f"{split}.tsv" for split in SPLITS}
LABELS_FILE = "labels.txt"

# WordNet 3.0 ``lexnames``: index = lex_filenum.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition", "noun.communication",
    "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession",
    "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession",
    "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)


def parse_line(line: str) -> tuple[str, str, str] | None:
    """``(offset, supersense, gloss)`` of one data-file line; ``None`` for licence lines.

    Licence header lines start with spaces; synset lines with an 8-digit byte offset.
    """
    if not line[:8].isdigit():
        return None
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 3 or not fields[1].isdigit():
        raise LayershareError(f"malformed WordNet synset line: {line[:60]!r}")
    lex = int(fields[1])
    if lex >= len(LEXNAMES):
        raise LayershareError(f"WordNet lex_filenum {lex} is not one of the 45 supersenses")
    return fields[0], LEXNAMES[lex], squeeze(gloss)


def read_synsets(root: Path) -> list[tuple[str, str, str]]:
    """``(pos:offset, label, gloss)`` of every synset with a gloss, in file order."""
    out = []
    for pos in POS_FILES:
        with open(root / f"data.{pos}", encoding="utf-8") as fh:
            for line in fh:
                parsed = parse_line(line)
                if parsed and parsed[2]:
                    out.append((f"{pos}:{parsed[0]}", parsed[1], parsed[2]))
    return out


def clean(synsets: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """One synset per (label, gloss); glosses that carry two labels are dropped."""
    labels_of: dict[str, set[str]] = {}
    for _, label, gloss in synsets:
        labels_of.setdefault(gloss, set()).add(label)
    out, seen = [], set()
    for key, label, gloss in synsets:
        if len(labels_of[gloss]) == 1 and gloss not in seen:
            seen.add(gloss)
            out.append((key, label, gloss))
    return out


def build(out: Path, work: Path, progress: bool) -> dict:
    """Fetch wordnet-base, parse, split and write ``{train,valid,test}.tsv`` + labels."""
    say(progress, f"wordnet-supersense: apt-get download {PACKAGE}")
    deb = apt_download([PACKAGE], work / "debs")[PACKAGE]
    root = deb_extract(deb, work / "pkg") / DATA_ROOT
    if not all((root / f"data.{pos}").is_file() for pos in POS_FILES):
        raise FetchError(f"{PACKAGE} has no {DATA_ROOT}/data.{{noun,verb,adj,adv}}: the "
                         "package layout changed; report it")
    say(progress, "wordnet-supersense: parsing synsets")
    synsets = clean(read_synsets(root))
    idx = stratified_split([k for k, _, _ in synsets], [label for _, label, _ in synsets])
    counts = {}
    for split in SPLITS:
        rows = [synsets[i] for i in idx[split]]
        write_lines(out / FILES[split], (f"{label}\t{gloss}" for _, label, gloss in rows))
        per_label = Counter(label for _, label, _ in rows)
        counts[split] = {"examples": len(rows), "words": sum(len(g.split()) for *_, g in rows),
                         "labels_present": len(per_label),
                         "smallest_label": min(per_label.values()) if per_label else 0}
    write_lines(out / LABELS_FILE, LEXNAMES)
    source = {PACKAGE: {"version": deb_version(deb), "sha256": sha256_file(deb)},
              "license": "WordNet 3.0 license (Princeton)"}
    return {"source": source, "counts": counts}


def _read_tsv(path: Path) -> list[tuple[str, str]]:
    rows = []
    for n, line in enumerate(read_lines(path), 1):
        label, sep, text = line.partition("\t")
        if not sep:
            raise LayershareError(f"{path}:{n}: expected 'label<TAB>text'")
        rows.append((label, text))
    return rows


def read(directory: Path) -> dict[str, list[tuple[str, str]]]:
    """``(label, text)`` rows per split of a prepared directory."""
    return {split: _read_tsv(Path(directory) / name) for split, name in FILES.items()}


def labels(directory: Path) -> list[str]:
    """The 45 label names in class-id order."""
    return read_lines(Path(directory) / LABELS_FILE)


def train_texts(directory: Path):
    """The training glosses (labels left out), for fitting a tokenizer."""
    return [text for _, text in _read_tsv(Path(directory) / FILES["train"])]
