"""Nothing a user's file names may make layershare read (or write, or fetch) outside the
directory the user named: the holes of an audit, one test each. A model directory's every
entry (shards of a ``.bin`` index, chat templates), the files a ``tokenizer_config.json``
names, a ``.gguf`` file's neighbours, a checkpoint's tokenizer files, a Whisper checkpoint's
tokenizer, a run directory's config, data and tokenizer, a data directory's manifest, the
tokenizer of ``model.init_from``. Each refusal is one line (exit 2) and nothing is opened."""

from __future__ import annotations

import json
import shutil

import pytest
import tiny_models as T
import torch
import yaml
from fault_helpers import assert_one_line, snapshot, text_files, train_sets

from layershare.cli import main
from layershare.errors import LayershareError


@pytest.fixture
def outside(tmp_path):
    """A secret the attacker wants read: a file beside, not inside, the named directory."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text("TOP SECRET\n")
    return path


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("confined") / "gpt2"
    T.gpt2().save_pretrained(path)
    return path


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


# -- a transformers directory: whatever transformers may open ------------------------------

def test_a_bin_index_shard_linked_outside_is_refused(hf_dir, tmp_path, outside, cli):
    src = tmp_path / "bin"
    src.mkdir()
    shutil.copy(hf_dir / "config.json", src)
    from safetensors.torch import load_file
    torch.save(load_file(hf_dir / "model.safetensors"), outside)  # real weights, outside
    shard = "pytorch_model-00001-of-00001.bin"
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"lm_head.weight": shard}}))
    (src / shard).symlink_to(outside)
    rc, err = cli(["generate", src, "--prompt", "the", "--max-new-tokens", "1"])
    assert_one_line(rc, err, shard, "leads outside the directory")


@pytest.mark.parametrize("name", ["chat_template.jinja",
                                  "additional_chat_templates/tool_use.jinja"])
def test_a_chat_template_linked_outside_is_refused(name, hf_dir, tmp_path, outside, cli):
    src = _copy(hf_dir, tmp_path / "hf")
    (src / name).parent.mkdir(exist_ok=True)
    (src / name).symlink_to(outside)
    rc, err = cli(["generate", src, "--prompt", "the", "--max-new-tokens", "1"])
    assert_one_line(rc, err, name, "leads outside the directory")


def test_files_a_tokenizer_config_names_must_be_inside(hf_dir, tmp_path, outside, cli):
    """transformers joins ``fast_tokenizer_files`` to the directory unchecked: through a
    directory named like a tokenizer file, ``x/../../`` climbs out."""
    src = _copy(hf_dir, tmp_path / "hf")
    (src / "tokenizer.1.json").mkdir()
    (src / "tokenizer_config.json").write_text(json.dumps(
        {"fast_tokenizer_files": ["tokenizer.1.json/../../outside/secret.txt"]}))
    rc, err = cli(["generate", src, "--prompt", "the", "--max-new-tokens", "1"])
    assert_one_line(rc, err, "fast_tokenizer_files", "lies outside the directory")


def test_a_fifo_anywhere_in_the_directory_never_hangs(hf_dir, tmp_path, cli):
    import os
    src = _copy(hf_dir, tmp_path / "hf")
    os.mkfifo(src / "chat_template.jinja")
    rc, err = cli(["generate", src, "--prompt", "the", "--max-new-tokens", "1"])
    assert_one_line(rc, err, "chat_template.jinja", "not a regular file")


def test_a_gguf_file_is_loaded_alone(tmp_path, monkeypatch):
    """transformers reads what lies beside a .gguf file (tokenizer_config.json...): it is
    given a private directory that holds the file alone."""
    from layershare.formats import gguf_check, hub

    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    (tmp_path / "tokenizer_config.json").write_text("{}")
    monkeypatch.setattr(gguf_check, "check_gguf", lambda path: None)
    with hub.gguf_alone(tmp_path / "model.gguf") as (where, kwargs):
        assert [p.name for p in where.iterdir()] == ["model.gguf"]
        assert kwargs == {"gguf_file": "model.gguf"}
        assert (where / "model.gguf").read_bytes() == b"GGUF"
    assert not where.exists()
    assert hub.tokenizer_files(tmp_path / "model.gguf") == {}  # its tokenizer is inside it


# -- a layershare checkpoint's tokenizer files, a Whisper checkpoint's tokenizer -----------

@pytest.mark.parametrize("verb", ["merge", "export"])
def test_checkpoint_tokenizer_files_linked_outside_are_not_copied(verb, compact, tmp_path,
                                                                  outside, cli):
    src = _copy(compact, tmp_path / "ckpt")
    (src / "vocab.json").unlink()
    (src / "vocab.json").symlink_to(outside)
    out = tmp_path / "out"
    argv = {"merge": ["merge", src, "--out", out],
            "export": ["export", src, "--format", "onnx", "--out", out]}[verb]
    rc, err = cli(argv)
    assert_one_line(rc, err, "vocab.json", "lies outside the directory")
    assert not out.exists()


def test_whisper_tokenizer_linked_outside_is_refused(tmp_path, outside):
    from layershare.formats import whisper

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "tokenizer.json").symlink_to(outside)
    for read in (whisper.special_tokens, whisper.tokenizer):
        with pytest.raises(LayershareError, match="lies outside the directory"):
            read(tmp_path / "ckpt")


# -- a run directory: its config may not lead outside it ------------------------------------

@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    sets = train_sets(text_files(base / "data"), steps=2)
    assert main(["train", "--quiet", *sets, "--out", str(base / "run")]) == 0
    return base / "run"


def _config(run, **data):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"].update(data)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_eval_of_a_run_never_reads_data_its_config_names_outside_it(text_run, tmp_path,
                                                                    outside, cli):
    run = _copy(text_run, tmp_path / "run")
    _config(run, test=str(outside))
    before = snapshot(tmp_path)
    rc, err = cli(["eval", run])
    assert_one_line(rc, err, "data.train", "outside the run directory")  # train is too
    assert snapshot(tmp_path) == before  # no test.hyp / test.ref holding the secret


def test_eval_of_a_run_reads_its_own_data_inside_it(text_run, tmp_path, cli, capsys):
    run = _copy(text_run, tmp_path / "run")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    for split in ("train", "valid", "test"):
        shutil.copy(cfg["data"][split], run / f"{split}.txt")
    _config(run, train="train.txt", valid="valid.txt", test=str(run / "test.txt"))
    rc, err = cli(["eval", run])
    assert rc == 0, err


def test_eval_of_a_recipe_run_reads_the_users_store_and_never_prepares(
        text_run, tmp_path, cli, monkeypatch):
    """``data.dir`` of the saved config is not followed (nothing is created there, npm is
    not run); the recipe must be prepared in the user's store already."""
    run = _copy(text_run, tmp_path / "run")
    victim = tmp_path / "victim" / "created"
    _config(run, name="brown", dir=str(victim), train=None, valid=None, test=None)
    monkeypatch.setenv("LAYERSHARE_DATA", str(tmp_path / "store"))
    from layershare.data import recipes
    monkeypatch.setattr(recipes, "prepare", lambda *a, **k: pytest.fail("prepare was called"))
    rc, err = cli(["eval", run])
    assert_one_line(rc, err, "brown: not prepared yet", "layershare data prepare brown")
    assert not victim.parent.exists() and not (tmp_path / "store").exists()


def test_eval_never_writes_through_a_link_the_run_holds(tmp_path, outside, cli):
    """eval of a translation run writes RUN/test.hyp and test.ref: a link there to a file
    elsewhere is replaced, the file it pointed to left as it was."""
    data = text_files(tmp_path / "data")
    config = {"data": {"name": "parallel", **{
        split: {"src": path, "tgt": path} for split, path in data.items()}}}
    (tmp_path / "mt.yaml").write_text(yaml.safe_dump(config))
    pairs = train_sets({}, steps=2)[1::2]  # KEY=VALUE of a tiny run, its data from the YAML
    sets = [a for kv in pairs if not kv.startswith("data.") for a in ("--set", kv)]
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--config", str(tmp_path / "mt.yaml"), *sets,
                 "--set", "eval.beam_size=1", "--out", str(run)]) == 0
    (run / "test.ref").unlink()
    (run / "test.ref").symlink_to(outside)
    rc, err = cli(["eval", run, "--trust-config"])
    assert rc == 0, err
    assert outside.read_text() == "TOP SECRET\n"
    assert not (run / "test.ref").is_symlink() and (run / "test.ref").read_text()


def test_replace_file_replaces_a_link_not_its_target(tmp_path, outside):
    from layershare.outputs import replace_file

    (tmp_path / "out.txt").symlink_to(outside)
    replace_file(tmp_path / "out.txt", "new\n")
    assert (tmp_path / "out.txt").read_text() == "new\n"
    assert outside.read_text() == "TOP SECRET\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "outside"]


@pytest.mark.parametrize("name", ["config.yaml", "model/tokenizer.json"])
def test_run_files_linked_outside_are_refused(name, text_run, tmp_path, cli):
    run = _copy(text_run, tmp_path / "run")
    shutil.move(run / name, tmp_path / "copy")  # an intact copy, but not the run's own
    (run / name).symlink_to(tmp_path / "copy")
    rc, err = cli(["generate", run, "--prompt", "the cat", "--max-new-tokens", "2"])
    assert_one_line(rc, err, name.split("/")[-1], "outside the directory")


def test_a_model_directory_linked_outside_the_run_is_refused(text_run, tmp_path, cli):
    run = _copy(text_run, tmp_path / "run")
    shutil.move(run / "model", tmp_path / "model")
    (run / "model").symlink_to(tmp_path / "model")
    rc, err = cli(["generate", run, "--prompt", "the cat", "--max-new-tokens", "2"])
    assert_one_line(rc, err, "leads outside the run directory")


def test_init_from_tokenizer_linked_outside_is_refused(text_run, tmp_path):
    from layershare.train.init_from import same_tokenizer

    source = _copy(text_run, tmp_path / "source")
    shutil.move(source / "tokenizer.json", tmp_path / "tokenizer.json")
    (source / "tokenizer.json").symlink_to(tmp_path / "tokenizer.json")
    with pytest.raises(LayershareError, match="lies outside the directory"):
        same_tokenizer(source, text_run)


# -- a config's own files, a data directory's manifest ---------------------------------------

def test_a_configs_tokenizer_is_taken_from_its_folder(tmp_path, monkeypatch):
    from layershare.train.config import load_config

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "run.yaml").write_text(
        "data:\n  name: text\n  tokenizer: tok.json\n  train: a.txt\n  valid: b.txt\n"
        "  test: c.txt\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path / "cfg" / "run.yaml")
    assert cfg.data.tokenizer == str(tmp_path / "cfg" / "tok.json")


@pytest.mark.parametrize("entry", ["../outside/secret.txt", "link"])
def test_a_manifest_naming_files_outside_its_directory_is_not_ready(entry, tmp_path, outside):
    from layershare.data.fetch import sha256_file
    from layershare.data.store import FORMAT, check_ready

    data = tmp_path / "brown"
    data.mkdir()
    (data / "link").symlink_to(outside)
    files = {entry: {"bytes": outside.stat().st_size, "sha256": sha256_file(outside)}}
    (data / "manifest.json").write_text(json.dumps(
        {"format": FORMAT, "recipe": "brown", "recipe_version": 1, "files": files}))
    reason = check_ready(data, "brown", 1)
    assert reason is not None and ("not a file of the directory" in reason
                                   or "lies outside the directory" in reason)
