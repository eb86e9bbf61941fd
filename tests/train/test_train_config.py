"""Config files, dotted overrides, every section from YAML and from Python, the saved
config of a run directory, ``--help-config``."""

from pathlib import Path

import pytest
import yaml

from layershare.config import ShareConfig
from layershare.dlt import DLTConfig
from layershare.errors import LayershareError
from layershare.train.config import (
    RunConfig,
    config_from_dict,
    describe,
    load_config,
    read_run_config,
    set_dotted,
)
from layershare.train.distill_config import DistillConfig
from layershare.train.rundir import same_run
from layershare.train.sections import DataConfig, EvalConfig, ModelConfig, ShareSection, TrainConfig

FIXTURES = Path(__file__).parent / "fixtures"
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "share": ShareSection, "eval": EvalConfig, "dlt": DLTConfig,
            "distill": DistillConfig}


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


def test_every_section_from_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("""
data: {name: classes, train: a.tsv, valid: b.tsv, test: c.tsv, tokenizer: /t/tok.json}
model: {layers: 3, d_model: 64, heads: 2, ffn: 96, dropout: 0, pos: rope, pool: first}
train: {steps: 30, lr: 3e-4, schedule: inverse-sqrt, beta2: 0.98, precision: fp32}
share: {method: dlt, matrices: [q, k]}
eval: {batch_size: 8, beam_size: 1, test_limit: 5}
dlt: {preset: honest, steps_per_action: 2, gamma: 0.5}
""")
    cfg = load_config(path)
    assert cfg.data.train == str(tmp_path / "a.tsv") and cfg.data.tokenizer == "/t/tok.json"
    assert (cfg.model.ffn, cfg.model.dropout, cfg.model.pos, cfg.model.pool) == \
        (96, 0.0, "rope", "first")
    assert isinstance(cfg.model.dropout, float)
    assert cfg.train.lr == pytest.approx(3e-4)  # YAML 1.1 reads 3e-4 as a string
    assert (cfg.train.schedule, cfg.train.beta2, cfg.train.precision) == \
        ("inverse-sqrt", 0.98, "fp32")
    assert cfg.share.method == "dlt" and cfg.share.matrices == ["q", "k"]
    assert (cfg.eval.batch_size, cfg.eval.beam_size, cfg.eval.test_limit) == (8, 1, 5)
    assert (cfg.dlt.steps_per_action, cfg.dlt.gamma, cfg.dlt.reward) == (2, 0.5, "neg-log-ppl")
    assert cfg.task == "classification"
    path.write_text("data: {name: text, train: all.txt}\n"
                    "distill: {student: s, teacher: t, loss: kl+lm, temperature: 2, "
                    "baseline: false}\n")
    d = load_config(path).distill
    assert (d.student, d.teacher, d.loss, d.temperature, d.baseline) == \
        ("s", "t", "kl+lm", 2.0, False)


def test_every_section_from_python():
    cfg = RunConfig(data=DataConfig(name="debian-summaries"),
                    model=ModelConfig(layers=2, encoder_layers=1, decoder_layers=3),
                    train=TrainConfig(steps=5, label_smoothing=0.1),
                    share=ShareSection(method="residual", rank=0, stacks="encoder"),
                    eval=EvalConfig(max_len=20))
    assert cfg.task == "summarisation" and cfg.share.stacks == "encoder"
    assert cfg.to_dict()["model"]["decoder_layers"] == 3
    assert config_from_dict(cfg.to_dict()) == cfg  # the saved form loads back
    # sections as mappings, as pydantic takes them
    assert RunConfig(train={"steps": 7}, dlt=None).train.steps == 7
    assert RunConfig(share={"method": "dlt"}, dlt=DLTConfig(hidden=8)).dlt.hidden == 8
    assert RunConfig(data={"name": "brown"},
                     distill=DistillConfig(student="s", teacher="t")).distill.teacher == "t"
    # each section alone checks its keys, and its errors name the section
    for name, cls in SECTIONS.items():
        with pytest.raises(LayershareError, match=rf"unknown config key '{name}\.nope'"):
            cls(nope=1)
    with pytest.raises(LayershareError, match=r"^train\.steps must be an integer >= 1, got 0$"):
        TrainConfig(steps=0)
    with pytest.raises(LayershareError, match=r"^unknown model\.pos 'alibi'"):
        ModelConfig(pos="alibi")
    with pytest.raises(LayershareError, match=r"^share\.rank must be an integer >= 1"):
        ShareSection(method="lowrank", rank=0)
    with pytest.raises(LayershareError, match=r"^data\.name=text needs data\.train"):
        RunConfig(data={"name": "text"})


def test_speech_and_summarisation_keys():
    cfg = load_config(None, ["data.name=espeak-asr", "train.bucket_frames=4000",
                             "model.conv_channels=16", "model.init_from=runs/dense"])
    assert cfg.task == "asr" and cfg.train.bucket_frames == 4000
    assert (cfg.model.conv_channels, cfg.model.init_from) == (16, "runs/dense")
    assert load_config(None, ["data.name=debian-summaries"]).task == "summarisation"
    for sets, match in ((["train.bucket_frames=0"], r"train\.bucket_frames must be an "
                                                    r"integer >= 1, got 0"),
                        (["model.conv_channels=8.5"], r"model\.conv_channels must be an "
                                                      r"integer, got 8\.5"),
                        (["model.init_from=[a]"], r"model\.init_from must be a string or "
                                                  r"null, got \['a'\]")):
        with pytest.raises(LayershareError, match=match):
            load_config(None, sets)


def test_every_share_config_key_from_yaml(tmp_path, monkeypatch):
    assert set(ShareConfig.model_fields) < set(ShareSection.model_fields)
    path = tmp_path / "run.yaml"
    path.write_text("""
share:
  method: tied
  group_size: 3
  rank: 5
  strategy: cycle
  init: first
  diag: true
  matrices: [q, v]
  tie_other: false
  stack: encoder.layers
  linears: {attn.q: q, attn.v: [v]}
  ranks: {encoder.layers: {q: [1, 2, 3]}}
  stacks: all
  transfer_at_step: 5
train: {steps: 10}
""")
    cfg = load_config(path)
    expected = yaml.safe_load(path.read_text())["share"]
    del expected["transfer_at_step"]
    assert set(expected) == set(ShareConfig.model_fields)  # the YAML above sets every key
    assert cfg.share.share_config() == ShareConfig(**expected)
    # the trainer hands every one of them to convert
    from layershare.train import optim
    seen = {}
    monkeypatch.setattr(optim, "convert", lambda model, config: seen.setdefault("c", config))
    optim.share(None, cfg)
    assert seen["c"].to_dict() == ShareConfig(**expected).to_dict()
    with pytest.raises(LayershareError, match="with stack= name the one stack"):
        load_config(path, ["share.stacks=decoder"])


def test_own_files_relative_to_config(tmp_path):
    path = tmp_path / "cfg" / "run.yaml"
    path.parent.mkdir()
    path.write_text("data: {name: parallel, train: [a.de, a.en], valid: {src: v.de, tgt: v.en},"
                    " test: /abs/t.txt}\n")
    cfg = load_config(path, ["data.test=[t.de, t.en]"])
    assert cfg.data.train == [str(path.parent / "a.de"), str(path.parent / "a.en")]
    assert cfg.data.valid == {"src": str(path.parent / "v.de"), "tgt": str(path.parent / "v.en")}


def test_set_dotted_and_describe(capsys):
    tree = {}
    set_dotted(tree, "a.b.c=1.5")
    set_dotted(tree, "a.d=null")
    assert tree == {"a": {"b": {"c": 1.5}, "d": None}}
    lines = describe()
    keys = [line.split()[0] for line in lines]
    every = [f"{s}.{k}" for s, cls in SECTIONS.items() for k in cls.model_fields]
    assert keys == every  # every key, in order, and nothing else
    assert all(len(line.split()) >= 3 for line in lines)  # key, default, help
    by_key = dict(zip(keys, lines))
    assert "'scratch'" in by_key["share.init"] and "ALBERT" in by_key["share.tie_other"]
    from layershare.cli import main
    assert main(["train", "--help-config"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == every


def test_saved_config_of_the_dataclass_configs_still_loads(tmp_path):
    """A run directory's config.yaml written before the configs were pydantic models."""
    path = FIXTURES / "saved-config-dataclasses.yaml"
    cfg = read_run_config(path)
    assert (cfg.share.method, cfg.dlt.preset, cfg.dlt.gamma, cfg.model.layers) == \
        ("dlt", "honest", 0.0, 3)
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.share.diag is None
    saved = yaml.safe_load(path.read_text())
    assert same_run(read_run_config(path).to_dict(), cfg)  # a resume accepts it
    for section, values in saved.items():  # every old key keeps its value
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"
    # and what the new code writes loads back the same
    out = tmp_path / "config.yaml"
    out.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    assert read_run_config(out) == cfg
    out.write_text("train: {steps: nope}\n")
    with pytest.raises(LayershareError, match=r"is damaged \(train\.steps must be an integer, "
                                              r"got 'nope'\).*--overwrite"):
        read_run_config(out)


def test_shipped_configs_parse():
    root = Path(__file__).parents[2] / "configs"
    configs = sorted(root.rglob("*.yaml"))
    assert len(configs) >= 15
    for path in configs:
        load_config(path)
