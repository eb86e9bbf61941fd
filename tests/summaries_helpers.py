"""A tiny apt lists directory for the debian-summaries tests (data and trainer): a
Translation-en list and a Packages list of a made-up archive, written as plain text so no
apt is needed.

Each source ``NAME`` (letters only: digits would be stripped by ``group_of`` and merge
sources) has two or three binaries: ``NAME``, ``libNAME-dev`` and, every third source, one
with an unrelated name (``x`` + the name reversed + ``-companion``) that only the Packages
list ties to its source. The binaries of a source share a paragraph, as real ones do. A
synopsis is the source name, the fifth word of the shared paragraph and the binary's role
(program, development files, companion), which its own paragraph states first, so a body
cut at a short ``train.seq_len`` still holds all three and a tiny model learns them.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

TRANSLATION = "deb.example.org_debian_dists_test_main_i18n_Translation-en"
SECURITY = "deb.example.org_debian-security_dists_test-security_main_i18n_Translation-en"
PACKAGES = "deb.example.org_debian_dists_test_main_binary-amd64_Packages"
WORDS = ("fast small simple free library tool viewer editor server client network file "
         "image sound text data graphics shell command parser format archive font game "
         "system desktop web mail secure portable modular plugin").split()


def source_name(i: int) -> str:
    """Distinct letter-only names: a, b, ..., z, ba, bb, ... (base 26)."""
    letters = ""
    while True:
        letters = string.ascii_lowercase[i % 26] + letters
        i //= 26
        if not i:
            return "src" + letters


def unrelated_name(source: str) -> str:
    return "x" + source[::-1] + "-companion"


def record(package: str, synopsis: str, paragraphs: list[str]) -> str:
    """One Translation-en record: one-space indented lines, ' .' between paragraphs."""
    lines = [f"Package: {package}", "Description-md5: 0123456789abcdef0123456789abcdef",
             f"Description-en: {synopsis}"]
    for k, paragraph in enumerate(paragraphs):
        if k:
            lines.append(" .")
        words = paragraph.split()
        lines += [" " + " ".join(words[j:j + 10]) for j in range(0, len(words), 10)]
    return "\n".join(lines) + "\n\n"


def archive(n_sources: int, seed: int = 0) -> tuple[list[tuple[str, str, str, list[str]]], str]:
    """``[(source, binary, synopsis, paragraphs)]`` and the Packages list text."""
    rng = random.Random(seed)
    rows, packages = [], []
    for i in range(n_sources):
        src = source_name(i)
        kind = rng.choice(WORDS)
        shared = f"{src} is a {kind} " + " ".join(rng.choice(WORDS) for _ in range(18))
        binaries = [(src, f"{src} {kind} program", "This package contains the program."),
                    (f"lib{src}-dev", f"{src} {kind} development files",
                     "This package contains the headers and static library.")]
        if i % 3 == 0:
            binaries.append((unrelated_name(src), f"{src} {kind} companion",
                             "This package contains a companion tool."))
        for binary, synopsis, last in binaries:
            rows.append((src, binary, synopsis, [last, shared]))
            packages.append(f"Package: {binary}\nVersion: 1.0-1\n"
                            + (f"Source: {src} (1.0-1)\n" if binary != src else "") + "\n")
    return rows, "".join(packages)


def write_lists(directory: Path, n_sources: int = 120, seed: int = 0) -> list:
    """Write the lists into ``directory``; returns the archive rows (see :func:`archive`).

    Besides the archive: a record whose body is too short, one without a long description,
    and a security list that repeats one record exactly (to be kept once).
    """
    directory.mkdir(parents=True, exist_ok=True)
    rows, packages = archive(n_sources, seed)
    text = "".join(record(b, s, p) for _, b, s, p in rows)
    text += record("tiny", "tiny package", ["too short to summarise"])
    text += "Package: nolong\nDescription-md5: 00\nDescription-en: no long description\n\n"
    (directory / TRANSLATION).write_text(text, encoding="utf-8")
    (directory / SECURITY).write_text(record(*rows[0][1:]), encoding="utf-8")
    (directory / PACKAGES).write_text(packages, encoding="utf-8")
    return rows
