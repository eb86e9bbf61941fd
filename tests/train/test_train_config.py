"""Config files, dotted overrides, unknown keys and value checks."""

import pytest

from layershare.errors import LayershareError
from layershare.train.config import RunConfig, describe, load_config, set_dotted


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {name: brown}\nmodel: {layers: 3, d_model: 64}\n"
                    "train: {steps: 10, lr: 1.0e-3}\nshare: {method: residual, rank: 8}\n")
    cfg = load_config(path, ["train.lr=3e-4", "share.diag=false", "share.strategy=[0, 0, 1]",
                             "model.heads=8"])
    assert isinstance(cfg, RunConfig)
    assert cfg.model.layers == 3 and cfg.model.d_model == 64 and cfg.model.heads == 8
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.steps == 10
    assert cfg.share.diag is False and cfg.share.strategy == [0, 0, 1]
    assert cfg.task == "lm" and cfg.train.batch_size == 32  # untouched default


@pytest.mark.parametrize("sets, name", [
    (["model.layer=3"], "model.layer"),
    (["trian.steps=3"], "trian"),
    (["share.method.x=1"], "share.method"),
])
def test_unknown_keys_are_named(sets, name):
    with pytest.raises(LayershareError, match=name.replace(".", r"\.")):
        load_config(None, sets)


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  stpes: 5\n")
    with pytest.raises(LayershareError, match="train.stpes"):
        load_config(path)


@pytest.mark.parametrize("sets, match", [
    (["share.method=shared"], "share.method"),
    (["train.schedule=linear"], "train.schedule"),
    (["train.steps=0"], "train.steps"),
    (["train.steps=ten"], "train.steps"),
    (["share.method=lowrank", "share.transfer_at_step=2000"], "transfer_at_step"),
    (["data.name=text"], "data.train"),
    (["data.train=x.txt"], "own files"),
    (["noequals"], "key=value"),
])
def test_bad_values(sets, match):
    with pytest.raises(LayershareError, match=match):
        load_config(None, sets)


def test_own_files_relative_to_config(tmp_path):
    path = tmp_path / "cfg" / "run.yaml"
    path.parent.mkdir()
    path.write_text("data: {name: parallel, train: [a.de, a.en], valid: {src: v.de, tgt: v.en},"
                    " test: /abs/t.txt}\n")
    cfg = load_config(path, ["data.test=[t.de, t.en]"])
    assert cfg.data.train == [str(path.parent / "a.de"), str(path.parent / "a.en")]
    assert cfg.data.valid == {"src": str(path.parent / "v.de"), "tgt": str(path.parent / "v.en")}


def test_set_dotted_and_describe():
    tree = {}
    set_dotted(tree, "a.b.c=1.5")
    set_dotted(tree, "a.d=null")
    assert tree == {"a": {"b": {"c": 1.5}, "d": None}}
    lines = describe()
    assert any(line.startswith("share.transfer_at_step") for line in lines)
    assert all(len(line.split()) >= 2 for line in lines)


def test_shipped_configs_parse():
    from pathlib import Path
    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 10
    for path in configs:
        load_config(path)
