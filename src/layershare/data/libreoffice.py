"""German -> English pairs from the LibreOffice help (Debian ``libreoffice-help-{de,en-us}``).

Both packages are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (never
installed). Paragraphs are aligned by (help file, element id), see :mod:`.helphtml`. Pairs
with an empty side or two equal sides (untranslated strings, code, menu names) are dropped.

Help files, not pairs, are split (by a hash of the file's path, so a file keeps its split
when Debian updates the packages), then duplicates are removed with the evaluation splits
taking priority: a pair is kept once per split, and dropped from valid/train when its German
or its English side already occurs in test (from train when it occurs in valid), so no
sentence of an evaluation set was seen in training. Debian versions move, so nothing is
pinned: the manifest records the package versions and the outputs' sha256.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LayershareError
from .fetch import FetchError, apt_download, deb_extract, deb_version, say, sha256_file
from .helphtml import align, paragraphs
from .split import SPLITS, bucket
from .store import read_lines, read_pairs, write_lines

PACKAGES = {"de": "libreoffice-help-de", "en": "libreoffice-help-en-us"}
HELP_ROOT = {"de": "usr/share/libreoffice/help/de", "en": "usr/share/libreoffice/help/en-US"}
VERSION = 1
VALID, TEST = 0.05, 0.10           # fractions of help files
MIN_TEST_PAIRS = 2000
PRIORITY = ("test", "valid", "train")
FILES = {split: (f"{split}.de", f"{split}.en") for split in SPLITS}


def help_pairs(de_root: Path, en_root: Path) -> dict[str, list[tuple[str, str]]]:
    """Aligned, cleaned ``(de, en)`` pairs per help file (path relative to the language root).

    Only files present in both languages count; files are read in sorted order.
    """
    out = {}
    for en_file in sorted((en_root / "text").rglob("*.html")):
        rel = en_file.relative_to(en_root).as_posix()
        de_file = de_root / rel
        if not de_file.is_file():
            continue
        pairs = align(paragraphs(de_file.read_text(encoding="utf-8")),
                      paragraphs(en_file.read_text(encoding="utf-8")))
        out[rel] = [(de, en) for de, en in pairs if de and en and de != en]
    return out


def split_pairs(by_file: dict[str, list[tuple[str, str]]], valid: float = VALID,
                test: float = TEST) -> dict[str, list[tuple[str, str]]]:
    """Split by help file, then de-duplicate with test > valid > train priority (see above)."""
    grouped: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for rel in sorted(by_file):
        grouped[bucket(rel, valid, test)].extend(by_file[rel])
    out, taken_de, taken_en = {}, set(), set()
    for split in PRIORITY:
        kept, seen = [], set()
        for de, en in grouped[split]:
            if (de, en) in seen or de in taken_de or en in taken_en:
                continue
            seen.add((de, en))
            kept.append((de, en))
        out[split] = kept
        taken_de.update(de for de, _ in kept)
        taken_en.update(en for _, en in kept)
    return {split: out[split] for split in SPLITS}


def build(out: Path, work: Path, progress: bool) -> dict:
    """Fetch both help packages, align, split and write ``{train,valid,test}.{de,en}``."""
    names = list(PACKAGES.values())
    say(progress, f"libreoffice-de-en: apt-get download {' '.join(names)}")
    debs = apt_download(names, work / "debs")
    roots = {}
    for lang, pkg in PACKAGES.items():
        say(progress, f"libreoffice-de-en: dpkg-deb -x {debs[pkg].name}")
        roots[lang] = deb_extract(debs[pkg], work / lang) / HELP_ROOT[lang]
        if not (roots[lang] / "text").is_dir():
            raise FetchError(f"{pkg} has no {HELP_ROOT[lang]}/text: the package layout "
                             "changed; report it")
    say(progress, "libreoffice-de-en: aligning paragraphs (about 20 s)")
    by_file = help_pairs(roots["de"], roots["en"])
    splits = split_pairs(by_file)
    if len(splits["test"]) < MIN_TEST_PAIRS:
        raise LayershareError(f"libreoffice-de-en: only {len(splits['test'])} test pairs "
                              f"(< {MIN_TEST_PAIRS}); the help packages changed, report it")
    counts = {}
    for split, pairs in splits.items():
        de_name, en_name = FILES[split]
        write_lines(out / de_name, (de for de, _ in pairs))
        write_lines(out / en_name, (en for _, en in pairs))
        counts[split] = {"pairs": len(pairs),
                         "help_files": sum(1 for rel in by_file
                                           if bucket(rel, VALID, TEST) == split),
                         "de_words": sum(len(de.split()) for de, _ in pairs),
                         "en_words": sum(len(en.split()) for _, en in pairs)}
    source = {pkg: {"version": deb_version(debs[pkg]), "sha256": sha256_file(debs[pkg])}
              for pkg in names}
    source["license"] = "MPL-2.0"
    return {"source": source, "counts": counts}


def read(directory: Path) -> dict[str, list[tuple[str, str]]]:
    """``(de, en)`` pairs per split of a prepared directory."""
    return {split: read_pairs(directory, de_name, en_name)
            for split, (de_name, en_name) in FILES.items()}


def train_texts(directory: Path):
    """Both sides of the training pairs, for a joint German+English tokenizer."""
    directory = Path(directory)
    de_name, en_name = FILES["train"]
    return read_lines(directory / de_name) + read_lines(directory / en_name)
