"""Fixtures of the fault suite: a tiny transformers model, its compact checkpoint, and a
runner that calls the command line in this process and returns (exit status, stderr)."""

from __future__ import annotations

import pytest
import tiny_models as T

from layershare.cli import main


@pytest.fixture(scope="session")
def gpt2_src(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "gpt2"
    T.gpt2().save_pretrained(path)
    (path / "vocab.json").write_text("{}")
    return path


@pytest.fixture(scope="session")
def compact(tmp_path_factory, gpt2_src):
    path = tmp_path_factory.mktemp("faults") / "compact"
    assert main(["convert", str(gpt2_src), "--method", "tied", "--out", str(path)]) == 0
    return path


@pytest.fixture
def cli(capsys):
    def run(argv):
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        return rc, capsys.readouterr().err
    return run
