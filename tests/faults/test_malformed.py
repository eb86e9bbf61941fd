"""Every malformed input of the sweep gets exit 2 and one line, and nothing changes on disk:
layershare.json, a transformers directory, YAML configs, a run directory's files."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from fault_helpers import assert_one_line, snapshot, text_files, train_sets

from layershare.cli import main

META = {  # variant -> (new layershare.json text, words of the one line)
    "list": ("[1, 2]", "expected a JSON object"),
    "not-json": ("{oops", "corrupted"),
    "not-utf8": (b"\xff\xfe{}", "corrupted"),
    "no-base": ({"format": 1, "config": None}, "missing key 'base'"),
    "no-config": ({"format": 1, "base": {"library": "transformers", "class": "GPT2LMHeadModel"}},
                  "missing key 'config'"),
    "base-string": ({"format": 1, "config": None, "base": "GPT2LMHeadModel"}, "'base' must be"),
    "config-string": ({"format": 1, "config": "tied", "base": {}}, "'config' must be"),
    "unknown-key": ({"format": 1, "config": None, "extra": 1,
                     "base": {"library": "transformers", "class": "GPT2LMHeadModel"}},
                    "unknown key 'extra'"),
    "unknown-config-key": ("config.speed", "unknown config key 'speed'"),
    "config-no-method": ("config-method", "no 'method'"),
    "diag-no": ("config.diag=no", "diag must be true or false"),
    "group-size-string": ("config.group_size=2s", "group_size must be an integer"),
    "class-mismatch": ("base.class=BertModel", "does not fit"),
    "class-unknown": ("base.class=os.system", "unknown transformers class"),
    "library": ("base.library=pickle", "base library"),
    "format": ("format=3", "unknown checkpoint format"),
}


def _mutate(meta: dict, how: str) -> dict:
    if how == "config.speed":
        meta["config"]["speed"] = 3
    elif how == "config-method":
        del meta["config"]["method"]
    elif how == "config.diag=no":
        meta["config"]["diag"] = "no"
    elif how == "config.group_size=2s":
        meta["config"]["group_size"] = "2"
    elif how.startswith("base."):
        key, value = how[5:].split("=")
        meta["base"][key] = value
    elif how == "format=3":
        meta["format"] = 3
    return meta


@pytest.mark.parametrize("variant", META)
@pytest.mark.parametrize("verb", ["inspect", "merge"])
def test_malformed_layershare_json(variant, verb, tmp_path, compact, cli):
    ck = tmp_path / "ck"
    shutil.copytree(compact, ck)
    new, words = META[variant]
    if isinstance(new, str) and not new.startswith(("[", "{")):
        new = _mutate(json.loads((ck / "layershare.json").read_text()), new)
    path = ck / "layershare.json"
    if isinstance(new, bytes):
        path.write_bytes(new)
    else:
        path.write_text(new if isinstance(new, str) else json.dumps(new))
    before = snapshot(tmp_path)
    argv = [verb, ck] + (["--out", tmp_path / "out"] if verb == "merge" else [])
    rc, err = cli(argv)
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before


def _gpt2_variant(src, dst, variant):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    if variant == "pickled-weights":  # torch refuses it with weights_only=True
        (dst / "model.safetensors").unlink()

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch PWNED",))
        torch.save({"x": Evil()}, dst / "pytorch_model.bin")
    elif variant == "truncated":
        weights = dst / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:3000])
    elif variant == "shapes":
        config["n_embd"] = 64
    elif variant.startswith("arch="):
        config["architectures"] = [variant[5:]]
    elif variant == "auto_map":
        config["auto_map"] = {"AutoModel": "evil.EvilModel"}
    elif variant == "config-type":
        config["n_layer"] = "four"
    if variant == "config-list":
        (dst / "config.json").write_text("[]")
    else:
        (dst / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("variant, words", [
    ("pickled-weights", "cannot load the model"),
    ("truncated", "cannot load the model"),
    ("shapes", "cannot load the model"),
    ("arch=GPT2Config", "not a transformers model class"),
    ("arch=AutoTokenizer", "not a transformers model class"),
    ("arch=BertModel", "not a transformers model class"),
    ("auto_map", "never runs"),
    ("config-type", "n_layer"),
    ("config-list", "expected a JSON object"),
])
def test_convert_of_a_bad_model_directory(variant, words, tmp_path, gpt2_src, cli,
                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    _gpt2_variant(gpt2_src, src, variant)
    before = snapshot(tmp_path)
    rc, err = cli(["convert", src, "--method", "tied", "--out", tmp_path / "out"])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before  # no output, no PWNED


CONFIGS = {  # a --config file's bytes, or --set values -> words of the one line
    "not-utf8": (b"train:\n  steps: 3\n# \xff\xfe\n", "not UTF-8"),
    "root-list": ("- train\n- model\n", "must be a mapping"),
    "yaml-syntax": ("train: {steps: 3\nmodel: [\n", "not valid YAML"),
    "yaml-tag": ("train: !!python/object/apply:os.system [touch PWNED]\n", "not valid YAML"),
    "beta1": (["train.beta1=2"], "train.beta1 must be in"),
    "diag-no": (['share.diag="no"'], "share.diag must be true or false"),
    "steps-string": (['train.steps="4"'], "train.steps must be an integer"),
    "unknown": (["train.speed=3"], "unknown config key 'train.speed'"),
    "section-list": (["model=[1, 2]"], "model must be a mapping"),
    "section-list-yaml": ("model: [1, 2]\n", "'model' is not a section"),
}


@pytest.mark.parametrize("variant", CONFIGS)
def test_bad_training_config(variant, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = text_files(tmp_path / "data")
    content, words = CONFIGS[variant]
    argv = ["train", "--quiet", *train_sets(data), "--out", tmp_path / "run"]
    if isinstance(content, list):
        argv[-2:-2] = [a for s in content for a in ("--set", s)]  # after the defaults
    else:
        path = tmp_path / "config.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        argv[2:2] = ["--config", path]
    before = snapshot(tmp_path)
    rc, err = cli(argv)
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before  # nothing written: no run, no tokenizer, no PWNED


def test_late_config_error_leaves_no_run(tmp_path, cli):
    """A sharing plan the model cannot take is found after the tokenizer is trained: the
    half-started run is removed again."""
    data = text_files(tmp_path / "data")
    out = tmp_path / "run"
    rc, err = cli(["train", "--quiet", *train_sets(data), "--set", "share.group_size=3",
                   "--out", out])
    assert_one_line(rc, err)
    assert not out.exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    data = text_files(base / "data")
    sets = train_sets(data)
    assert main(["train", "--quiet", *sets, "--out", str(base / "run")]) == 0
    return base / "run", sets


RUN_DAMAGE = {  # file in the run directory -> (new bytes, verb, words)
    "state-pickled": ("checkpoints/last/state.pt", "pickle", "train", "state.pt: cannot be read"),
    "state-not-dict": ("checkpoints/last/state.pt", "list", "train", "not a training state"),
    "state-truncated": ("checkpoints/last/state.pt", "cut", "train", "state.pt: cannot be read"),
    "info-list": ("checkpoints/last/info.json", b"[1]", "train", "not a checkpoint's info"),
    "config-garbage": ("config.yaml", b"train: [\n", "train", "is damaged"),
    "config-mistyped": ("config.yaml", b"train: {steps: many}\n", "train", "is damaged"),
    "config-eval": ("config.yaml", b"- 1\n", "eval", "is damaged"),
}


@pytest.mark.parametrize("variant", RUN_DAMAGE)
def test_damaged_run_directory(variant, tmp_path, finished_run, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the payload's relative marker would land here
    run, sets = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    name, new, verb, words = RUN_DAMAGE[variant]
    path = copy / name
    if new == "pickle":
        marker = tmp_path / "PWNED"

        class Evil:  # both markers: in the working directory and, absolute, in tmp_path
            def __reduce__(self):
                return (os.system, (f"touch PWNED {marker}",))
        torch.save({"optimizer": Evil(), "rng": []}, path)
    elif new == "list":
        torch.save([1, 2], path)
    elif new == "cut":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_bytes(new)
    before = snapshot(tmp_path)
    if verb == "train":  # a longer run: resumes from checkpoints/last
        rc, err = cli(["train", "--quiet", *sets, "--set", "train.steps=6", "--out", copy])
    else:
        rc, err = cli(["eval", copy])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before  # no output, no PWNED (cwd and tmp_path)
