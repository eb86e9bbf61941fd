"""Summarisation pairs from Debian package descriptions: long description -> synopsis.

Every Debian package has a one-line *synopsis* and a *long description* written for the same
reader, so body -> synopsis is a real abstractive summarisation pair (the synopsis rarely
occurs verbatim in its body). apt fetches them all, in English, as its Translation lists::

    apt-get update -o Acquire::Languages=en
    /usr/lib/apt/apt-helper cat-file /var/lib/apt/lists/*_main_i18n_Translation-en.lz4

Each record reads ``Package:``, ``Description-md5:``, ``Description-en: SYNOPSIS`` and then the
long description as lines indented by one space, where a lone `` .`` is a paragraph break
(Debian policy 5.6.13). The body is every paragraph joined by one space, whitespace
squeezed; pairs whose body has fewer than 20 words are dropped (mostly "transitional
package" stubs). The recipe reads the lists apt already has and never runs ``apt-get update``
itself (it needs root and changes the machine); when they are absent it says the command.
Only the ``main`` component is read, so the data do not depend on which other components a
machine enables; security and point-release updates of main are read too.

**Split by source package.** The binaries of one source share most of their description
(``0ad`` and ``0ad-data`` share a paragraph; ``libfoo1``, ``libfoo-dev`` and ``libfoo-doc``
differ in one sentence), so a split by binary package would put near-copies of a test body in
train. The Translation lists have no ``Source`` field, but apt's Packages lists of the same
archive do: the source comes from there (``*_main_binary-*_Packages*``), and the binary name
stands in for a package those lists lack (another architecture's). Versioned sources are one
upstream project with the same text (``gcc-12``/``gcc-13``, ``llvm-toolchain-15``/``-16``,
kernel ABIs), so the unit of the split is the source name with digits removed, a ``lib``
prefix and ``-dev``/``-doc``/``-data``-like suffixes stripped (:func:`group_of`).
``Description-md5`` was no alternative: it names one exact text, so grouping by it only
joins exact copies (which the de-duplication below removes anyway), not near-copies. Grouping
harder, by any shared paragraph, was measured and rejected: family boilerplate (the Haskell,
Tryton, Node.js paragraphs) chains such groups into one of thousands of pairs, which would
make the test split a coin toss between families. The chosen grouping leaves some test
bodies with a first paragraph also in train (far fewer than grouping by binary name would);
what remains is mostly such family boilerplate, whose synopses differ.

Groups go to test / valid / train by a stable hash of the group (``split.bucket``), so a
package keeps its split when Debian updates others. Then one pair per body, evaluation
splits first: a body already in test is dropped from valid and train, one in valid from
train, so no evaluation body was seen in training. Nothing is pinned (the lists move with
every archive update): the manifest records each list file's sha256.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Iterable, Iterator

from .fetch import FetchError, apt_cat_file, say, sha256_file
from .split import SPLITS, bucket
from .store import read_pairs, write_lines

LISTS_DIR = Path("/var/lib/apt/lists")
TRANSLATIONS = "*_main_i18n_Translation-en*"
PACKAGES = "*_main_binary-*_Packages*"
FETCH_LISTS = "apt-get update -o Acquire::Languages=en"
COMPRESSED = {".lz4", ".gz", ".xz", ".bz2", ".zst", ".lzma"}
VERSION = 1
MIN_WORDS = 20
VALID, TEST = 0.05, 0.05            # fractions of source groups: ~3,000 test pairs
PRIORITY = ("test", "valid", "train")
FILES = {split: (f"{split}.body", f"{split}.synopsis") for split in SPLITS}

_VERSION_CHARS = re.compile(r"[0-9.+~]+")
_SUFFIX = re.compile(r"-(dev|doc|docs|dbg|data|common|bin|utils|tools|examples)$")


def stanzas(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """The records of a deb822 file (apt's lists): field -> value, continuation lines
    kept after ``\\n`` with their indentation, so a description's layout survives."""
    record: dict[str, str] = {}
    field = None
    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            if record:
                yield record
            record, field = {}, None
        elif line[0] in " \t":
            if field is not None:
                record[field] += "\n" + line
        else:
            field, _, value = line.partition(":")
            record[field] = value.strip()
    if record:
        yield record


def description_pair(text: str) -> tuple[str, str]:
    """``(synopsis, body)`` of a ``Description-en`` value; the body is one line."""
    synopsis, _, long = text.partition("\n")
    words = [w for line in long.splitlines() if line.strip() != "." for w in line.split()]
    return " ".join(synopsis.split()), " ".join(words)


def read_descriptions(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """``(package, synopsis, body)`` of every Translation record with both fields."""
    for record in stanzas(lines):
        package, text = record.get("Package"), record.get("Description-en")
        if package and text:
            yield (package, *description_pair(text))


def read_sources(lines: Iterable[str]) -> dict[str, str]:
    """Binary package -> source package name, from a Packages list (``Source: name
    (version)`` when they differ; no ``Source`` field means the source has its name)."""
    out = {}
    for record in stanzas(lines):
        package = record.get("Package")
        if package:
            out[package] = (record.get("Source") or package).split()[0]
    return out


def group_of(name: str) -> str:
    """The split unit of a source (or binary) name: digits and version characters removed,
    a ``lib`` prefix and packaging suffixes stripped (``libgtk-3-dev`` -> ``gtk``,
    ``llvm-toolchain-15`` -> ``llvm-toolchain``). Merging two unrelated names only makes a
    group larger; it never lets a package into two splits."""
    stem = re.sub(r"-+", "-", _VERSION_CHARS.sub("-", name.lower())).strip("-")
    if stem.startswith("lib") and len(stem) > 3:
        stem = stem[3:].lstrip("-")
    while (shorter := _SUFFIX.sub("", stem)) != stem:
        stem = shorter
    return stem or name


def list_files(lists_dir: Path, pattern: str) -> list[Path]:
    """apt's list files matching ``pattern`` (regular files, sorted by name)."""
    return sorted(p for p in Path(lists_dir).glob(pattern) if p.is_file())


def list_lines(path: Path) -> list[str]:
    """Lines of an apt list file: compressed ones through ``apt-helper cat-file``, plain
    ones (``Acquire::GzipIndexes`` off, or a test's fixture) read directly."""
    if path.suffix in COMPRESSED:
        return apt_cat_file(path).splitlines()
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def find_lists(lists_dir: Path) -> tuple[list[Path], list[Path]]:
    """The Translation-en and Packages lists of ``main``, or a one-line error saying how to
    fetch them."""
    translations = list_files(lists_dir, TRANSLATIONS)
    if not translations:
        raise FetchError(f"debian-summaries reads apt's English descriptions, but "
                         f"{lists_dir} has no {TRANSLATIONS}: run `{FETCH_LISTS}` (as root) "
                         "and retry")
    return translations, list_files(lists_dir, PACKAGES)


def split_pairs(rows: Iterable[tuple[str, str, str]], sources: dict[str, str],
                valid: float = VALID, test: float = TEST, min_words: int = MIN_WORDS
                ) -> dict[str, list[tuple[str, str, str]]]:
    """``(group, body, synopsis)`` per split from ``(package, synopsis, body)`` rows: short
    bodies and empty synopses dropped, split by source group, one pair per body with
    test > valid > train priority (see the module doc)."""
    grouped: dict[str, list[tuple[str, str, str]]] = {s: [] for s in SPLITS}
    for package, synopsis, body in rows:
        if synopsis and len(body.split()) >= min_words:
            group = group_of(sources.get(package, package))
            grouped[bucket(group, valid, test)].append((group, body, synopsis))
    out, taken = {}, set()
    for split in PRIORITY:
        kept = []
        for group, body, synopsis in grouped[split]:
            if body not in taken:
                taken.add(body)
                kept.append((group, body, synopsis))
        out[split] = kept
    return {split: out[split] for split in SPLITS}


def _counts(rows: list[tuple[str, str, str]]) -> dict:
    body_words = [len(body.split()) for _, body, _ in rows]
    return {"pairs": len(rows), "source_groups": len({group for group, _, _ in rows}),
            "body_words": sum(body_words),
            "synopsis_words": sum(len(s.split()) for _, _, s in rows),
            "median_body_words": statistics.median_low(body_words) if body_words else 0}


def build(out: Path, work: Path, progress: bool, lists_dir: Path | None = None) -> dict:
    """Read apt's lists, pair, split and write ``{train,valid,test}.{body,synopsis}``."""
    translations, packages = find_lists(LISTS_DIR if lists_dir is None else lists_dir)
    say(progress, f"debian-summaries: reading {len(translations)} Translation-en and "
                  f"{len(packages)} Packages lists of apt")
    sources: dict[str, str] = {}
    for path in packages:
        sources.update(read_sources(list_lines(path)))
    rows = [row for path in translations for row in read_descriptions(list_lines(path))]
    splits = split_pairs(rows, sources)
    empty = [split for split, pairs in splits.items() if not pairs]
    if empty:
        raise FetchError(f"debian-summaries: no pair with a body of >= {MIN_WORDS} words in "
                         f"{', '.join(empty)} (from {len(rows)} descriptions): the lists "
                         f"are truncated or their format changed; run `{FETCH_LISTS}` again")
    counts = {}
    for split, pairs in splits.items():
        body_name, synopsis_name = FILES[split]
        write_lines(out / body_name, (body for _, body, _ in pairs))
        write_lines(out / synopsis_name, (synopsis for _, _, synopsis in pairs))
        counts[split] = _counts(pairs)
    with_source = sum(1 for package, _, _ in rows if package in sources)
    source = {"apt_lists": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                            for p in translations + packages},
              "descriptions": len(rows), "descriptions_with_source_from_packages": with_source,
              "license": "each package's own (Debian main: DFSG-free)"}
    return {"source": source, "counts": counts}


def read(directory: Path) -> dict[str, list[tuple[str, str]]]:
    """``(body, synopsis)`` pairs per split of a prepared directory."""
    return {split: read_pairs(directory, body_name, synopsis_name)
            for split, (body_name, synopsis_name) in FILES.items()}


def train_texts(directory: Path) -> list[str]:
    """Bodies and synopses of the training pairs, for one tokenizer of both sides."""
    return [text for pair in read_pairs(directory, *FILES["train"]) for text in pair]
