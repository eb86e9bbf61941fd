"""The output policy (layershare.outputs) on every writing command: an --out that is a file,
a non-empty foreign directory, the source, inside the source or "" is refused with exit 2
and one line, and the user's files are byte-identical afterwards."""

from __future__ import annotations

import pytest
import tiny_models as T
import torch
from fault_helpers import assert_one_line, snapshot, text_files, train_sets

import layershare
from layershare.errors import LayershareError

COMMANDS = ("convert", "compress", "merge", "train", "data-prepare")
CASES = {  # case -> words the one line must contain
    "file": "is a file",
    "foreign": "did not write",
    "source": "the source itself",
    "inside": "inside the source",
    "contains": "contains the source",
    "empty": "empty",
}
NO_SOURCE = {"train", "data-prepare"}  # no source to be equal to, inside or around
PAIRS = [(command, case) for command in COMMANDS for case in CASES
         if not (command in NO_SOURCE and case in ("source", "inside", "contains"))]


def _setup(command, case, tmp_path, gpt2_src, compact):
    """(argv, the output path, the paths whose bytes must not change)."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("my notes\n")
    source = {"convert": gpt2_src, "compress": gpt2_src, "merge": compact}.get(command)
    if case == "file":
        out = user / "notes.txt"
    elif case == "foreign":
        out = user
    elif case == "source":
        out = source
    elif case == "inside":
        out = source / "sub"
    elif case == "contains":
        out = source.parent
    else:
        out = ""
    if command == "convert":
        argv = ["convert", gpt2_src, "--method", "tied", "--out", out]
    elif command == "compress":
        argv = ["compress", gpt2_src, "--method", "tied", "--keep", "0.5", "--calib", "none",
                "--quiet", "--out", out]
    elif command == "merge":
        argv = ["merge", compact, "--out", out]
    elif command == "train":
        argv = ["train", "--quiet", *train_sets(text_files(tmp_path / "data")), "--out", out]
    else:  # the recipe's output is DIR/brown: make that the file / foreign directory
        if case == "file":
            (user / "brown").write_text("mine\n")
        elif case == "foreign":
            (user / "brown").mkdir()
            (user / "brown" / "train.txt").write_text("my own corpus\n")
        argv = ["data", "prepare", "brown", "--quiet", "--dir", user if case != "empty" else ""]
    return argv, [user] + ([source] if source is not None else [])


@pytest.mark.parametrize("command, case", PAIRS)
def test_bad_out_is_refused_and_nothing_changes(command, case, tmp_path, gpt2_src, compact,
                                                cli):
    argv, keep = _setup(command, case, tmp_path, gpt2_src, compact)
    before = snapshot(*keep, tmp_path)
    rc, err = cli(argv)
    assert_one_line(rc, err, CASES[case])
    assert snapshot(*keep, tmp_path) == before


@pytest.mark.parametrize("case", ["file", "foreign", "empty"])
def test_save_api_refuses(case, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("my notes\n")
    out = {"file": user / "notes.txt", "foreign": user, "empty": ""}[case]
    before = snapshot(tmp_path)
    with pytest.raises(LayershareError) as exc:
        layershare.save(T.gpt2(), out)
    assert "\n" not in str(exc.value) and CASES[case] in str(exc.value)
    assert snapshot(tmp_path) == before


def test_other_layershare_kind_needs_overwrite(tmp_path, gpt2_src, compact, cli):
    """A merged model in --out is layershare's own: convert refuses it unless --overwrite."""
    dense = tmp_path / "dense"
    assert cli(["merge", compact, "--out", dense])[0] == 0
    before = snapshot(dense)
    rc, err = cli(["convert", gpt2_src, "--method", "tied", "--out", dense])
    assert_one_line(rc, err, "--overwrite", "merged dense model")
    assert snapshot(dense) == before
    assert cli(["convert", gpt2_src, "--method", "tied", "--out", dense, "--overwrite"])[0] == 0
    assert (dense / "layershare.json").is_file() and not (dense / ".layershare-output").exists()


def test_same_kind_is_replaced_and_stale_siblings_go(tmp_path, gpt2_src, cli):
    """Re-running convert replaces its earlier output; a killed run's temporary sibling (dead
    PID) is removed, a live one is kept."""
    out = tmp_path / "out"
    assert cli(["convert", gpt2_src, "--method", "tied", "--out", out])[0] == 0
    dead = tmp_path / ".out.tmp-999999999-abc"
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    assert cli(["convert", gpt2_src, "--method", "residual", "--rank", "2", "--out", out])[0] == 0
    assert layershare.load(out).layershare_config.method == "residual"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_old_output_put_back_after_a_kill_between_renames(tmp_path, gpt2_src, cli):
    """A kill between 'rename old aside' and 'rename new in' leaves only .out.old-PID; the
    next write first puts it back, then replaces it as usual."""
    from layershare.outputs import clean_stale

    out = tmp_path / "out"
    assert cli(["convert", gpt2_src, "--method", "tied", "--out", out])[0] == 0
    out.rename(tmp_path / ".out.old-999999999")
    clean_stale(out)
    assert layershare.load(out).layershare_config.method == "tied"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_convert_none_is_one_line():
    with pytest.raises(LayershareError, match="nn.Module"):
        layershare.convert(None)
    with pytest.raises(LayershareError, match="nn.Module"):
        layershare.save(torch.zeros(2), "x")
