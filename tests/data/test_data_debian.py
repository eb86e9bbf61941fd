"""debian-summaries: description parsing, source grouping, the split, and the missing-lists
error (on a tiny Translation-en fixture, tests/summaries_helpers.py; no apt needed)."""

from __future__ import annotations

import gzip
import os
import shutil

import pytest
import summaries_helpers as H
from requirements import need

from layershare.cli import main
from layershare.data import debian, load_splits, prepare, read_manifest
from layershare.data.fetch import APT_HELPER
from layershare.errors import LayershareError

RECORD = """Package: 0ad-data
Description-md5: 26581e685027d5ae84824362a4ba59ee
Description-en: Real-time strategy game of ancient warfare (data files)
 0 A.D. (pronounced "zero ey-dee") is a free, open-source, cross-platform
 real-time strategy (RTS) game of ancient warfare.
 .
 This package contains:
   * the main data files
Source: ignored-here

Package: nodesc
Description-md5: 00
"""


def test_records_become_synopsis_and_one_line_body():
    rows = list(debian.read_descriptions(RECORD.splitlines(keepends=True)))
    assert rows == [("0ad-data", "Real-time strategy game of ancient warfare (data files)",
                     '0 A.D. (pronounced "zero ey-dee") is a free, open-source, cross-platform '
                     "real-time strategy (RTS) game of ancient warfare. This package contains: "
                     "* the main data files")]


def test_sources_from_packages_lists():
    text = "Package: libfoo1\nSource: foo (1.2-3)\nVersion: 1.2-3\n\nPackage: foo\nVersion: 1\n"
    assert debian.read_sources(text.splitlines()) == {"libfoo1": "foo", "foo": "foo"}


@pytest.mark.parametrize("names, group", [
    (("gcc-12", "gcc-13"), "gcc"),
    (("llvm-toolchain-15", "llvm-toolchain-16"), "llvm-toolchain"),
    (("libgtk-3-dev", "libgtk-3-doc", "gtk"), "gtk"),
    (("0ad", "0ad-data", "0ad-data-common"), "ad"),
    (("python3.11", "python3.12"), "python"),
])
def test_versions_and_packaging_suffixes_share_a_group(names, group):
    assert {debian.group_of(name) for name in names} == {group}


def test_unrelated_names_keep_apart():
    assert len({debian.group_of(n) for n in ("gimp", "inkscape", "libreoffice", "lib")}) == 4


def body_sources(rows) -> dict[str, str]:
    """Body (as the recipe writes it) -> the fixture's source name."""
    return {" ".join(" ".join(paragraphs).split()): src for src, _, _, paragraphs in rows}


def test_split_by_source_group(tmp_path):
    rows = H.write_lists(tmp_path / "lists")
    out = tmp_path / "out"
    out.mkdir()
    result = debian.build(out, tmp_path, progress=False, lists_dir=tmp_path / "lists")
    splits = debian.read(out)
    source_of = body_sources(rows)
    split_of_source: dict[str, set] = {}
    for split, pairs in splits.items():
        assert pairs, f"{split} is empty"
        for body, _ in pairs:
            split_of_source.setdefault(source_of[body], set()).add(split)
    # every source, with its unrelated-named companion, lies in exactly one split
    assert all(len(s) == 1 for s in split_of_source.values())
    assert len(split_of_source) == 120
    assert sum(len(p) for p in splits.values()) == len(rows)  # duplicate kept once
    bodies = [b for p in splits.values() for b, _ in p]
    assert len(bodies) == len(set(bodies)) and "too short to summarise" not in bodies
    assert result["counts"]["test"]["pairs"] == len(splits["test"])
    # read: the archive, the short one, the one without a body, the security copy
    assert result["source"]["descriptions"] == len(rows) + 3
    assert result["source"]["descriptions_with_source_from_packages"] == len(rows) + 1


def test_split_without_packages_list_separates_companions(tmp_path):
    """Without the Packages list a companion is its own group: some land in another split
    than their source (which is why the recipe reads the Packages lists)."""
    rows = H.write_lists(tmp_path)
    (tmp_path / H.PACKAGES).unlink()
    by_body = body_sources(rows)
    where: dict[str, set] = {}
    translations, packages = debian.find_lists(tmp_path)
    assert packages == []
    lines = [line for path in translations for line in debian.list_lines(path)]
    splits = debian.split_pairs(debian.read_descriptions(lines), {})
    for split, triples in splits.items():
        for _, body, _ in triples:
            where.setdefault(by_body[body], set()).add(split)
    assert any(len(s) > 1 for s in where.values())


def test_prepare_registers_and_checksums(tmp_path, monkeypatch):
    H.write_lists(tmp_path / "lists")
    monkeypatch.setattr(debian, "LISTS_DIR", tmp_path / "lists")
    path = prepare("debian-summaries", tmp_path / "data", progress=False)
    manifest = read_manifest(path)
    assert manifest["recipe"] == "debian-summaries"
    assert set(manifest["files"]) == {f"{s}.{k}" for s in ("train", "valid", "test")
                                      for k in ("body", "synopsis")}
    assert H.TRANSLATION in manifest["source"]["apt_lists"]
    splits = load_splits("debian-summaries", tmp_path / "data", progress=False)
    assert {s: len(p) for s, p in splits.items()} == {
        s: c["pairs"] for s, c in manifest["counts"].items()}
    body, synopsis = splits["train"][0]
    assert synopsis.split()[0] in body.split()  # the fixture's synopsis names the source
    # the lists are not read again once prepared
    shutil.rmtree(tmp_path / "lists")
    assert prepare("debian-summaries", tmp_path / "data", progress=False) == path


def test_missing_lists_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(debian, "LISTS_DIR", tmp_path / "empty")
    with pytest.raises(LayershareError, match=r"apt-get update -o Acquire::Languages=en"):
        prepare("debian-summaries", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "debian-summaries").exists()
    assert main(["data", "prepare", "debian-summaries", "--dir", str(tmp_path / "d"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Translation-en" in err and "apt-get update" in err


def test_lists_without_pairs_are_an_error(tmp_path):
    (tmp_path / H.TRANSLATION).write_text(H.record("a", "b", ["too short"]))
    with pytest.raises(LayershareError, match="no pair with a body"):
        debian.build(tmp_path, tmp_path, progress=False, lists_dir=tmp_path)


def test_compressed_lists_are_read_with_apt_helper(tmp_path):
    need("apt-helper", bool(shutil.which("apt-helper")) or os.path.isfile(APT_HELPER),
         "apt-helper (Debian's apt) is not installed")
    text = H.record("foo", "a foo", ["one two three"])
    path = tmp_path / (H.TRANSLATION + ".gz")
    path.write_bytes(gzip.compress(text.encode()))
    assert list(debian.read_descriptions(debian.list_lines(path))) == [
        ("foo", "a foo", "one two three")]
    assert debian.find_lists(tmp_path) == ([path], [])
