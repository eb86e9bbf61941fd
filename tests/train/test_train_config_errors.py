"""A mistake in a run config is one line that names the key (dotted), the value and what
is allowed: bad types, unknown keys, out-of-range values, rules across sections."""

import pytest

from layershare.errors import LayershareError
from layershare.train.config import load_config


def error_of(sets=(), yaml_text=None, tmp_path=None) -> str:
    path = None
    if yaml_text is not None:
        path = tmp_path / "run.yaml"
        path.write_text(yaml_text)
    with pytest.raises(LayershareError) as info:
        load_config(path, list(sets))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("text, key, value, allowed", [
    ('share: {diag: "no"}', "share.diag", "'no'", "true or false or null"),
    ("share: {tie_other: 1}", "share.tie_other", "1", "true or false"),
    ("share: {group_size: '2'}", "share.group_size", "'2'", "an integer"),
    ("share: {strategy: 3}", "share.strategy", "3", "a string or a list of integers"),
    ("share: {matrices: q}", "share.matrices", "'q'", "a list of strings"),
    ("share: {ranks: {h: {q: [1.5]}}}", "share.ranks", "{'h': {'q': [1.5]}}", "a mapping"),
    ("train: {steps: '10'}", "train.steps", "'10'", "an integer"),
    ("train: {steps: 10.0}", "train.steps", "10.0", "an integer"),
    ("train: {lr: true}", "train.lr", "True", "a number"),
    ("train: {lr: fast}", "train.lr", "'fast'", "a number"),
    ("model: {layers: 2.5}", "model.layers", "2.5", "an integer"),
    ("model: {init_from: 3}", "model.init_from", "3", "a string or null"),
    ("data: {name: text, train: 5, valid: v, test: t}", "data.train", "5", "a string"),
    ("eval: {beam_size: 1.0}", "eval.beam_size", "1.0", "an integer"),
    ("share: {method: dlt}\ndlt: {shuffle_rewards: 1}", "dlt.shuffle_rewards", "1",
     "true or false"),
    ("distill: {student: s, teacher: t, baseline: 'yes'}", "distill.baseline", "'yes'",
     "true or false"),
    ("train: []", "train", "[]", "a mapping"),
])
def test_bad_types(tmp_path, text, key, value, allowed):
    message = error_of(yaml_text=text, tmp_path=tmp_path)
    assert message == f"{key} must be {allowed}, got {value}" or \
        (message.startswith(f"{key} must be {allowed}") and message.endswith(f"got {value}"))


@pytest.mark.parametrize("sets, line", [
    (["train.steps=0"], "train.steps must be an integer >= 1, got 0"),
    (["train.lr=0"], "train.lr must be > 0, got 0"),
    (["train.lr=-3e-4"], "train.lr must be > 0, got '-3e-4'"),
    (["train.beta1=1"], "train.beta1 must be in [0, 1), got 1"),
    (["train.label_smoothing=-0.1"], "train.label_smoothing must be in [0, 1), got -0.1"),
    (["train.grad_clip=-1"], "train.grad_clip must be >= 0, got -1"),
    (["train.eval_batches=-1"], "train.eval_batches must be an integer >= 0, got -1"),
    (["train.warmup=-1"], "train.warmup must be an integer >= 0, got -1"),
    (["model.dropout=1"], "model.dropout must be in [0, 1), got 1"),
    (["model.heads=0"], "model.heads must be an integer >= 1, got 0"),
    (["model.ffn=0"], "model.ffn must be an integer >= 1, got 0"),
    (["share.group_size=0"], "share.group_size must be an integer >= 1, got 0"),
    (["share.transfer_at_step=-1"], "share.transfer_at_step must be an integer >= 0, got -1"),
    (["share.method=lowrank", "share.rank=0"],
     "share.rank must be an integer >= 1 for method lowrank, got 0"),
    (["share.method=residual", "share.rank=-1"],
     "share.rank must be an integer >= 0 for method residual, got -1"),
    (["share.method=lowrank", "share.ranks={h: {q: [4, 0]}}"],
     "share.ranks['h']['q'] must be a list of integers >= 1, got [4, 0]"),
    (["eval.beam_size=0"], "eval.beam_size must be an integer >= 1, got 0"),
    (["eval.max_len=-1"], "eval.max_len must be an integer >= 0, got -1"),
    (["share.method=dlt", "dlt.epsilon_min=2"], "dlt.epsilon_min must be in [0, 1], got 2"),
    (["share.method=dlt", "dlt.q_lr=0"], "dlt.q_lr must be > 0, got 0"),
    (["distill.student=s", "distill.teacher=t", "distill.temperature=0"],
     "distill.temperature must be > 0, got 0"),
    (["distill.student=s", "distill.teacher=t", "distill.eval_seq_len=1"],
     "distill.eval_seq_len must be an integer >= 2, got 1"),
    (["share.method=shared"],
     "unknown share.method 'shared'; choose one of dense, residual, lowrank, tied, dlt"),
    (["share.init=median"], "unknown share.init 'median'; choose one of mean, first, "
                            "stepwise, scratch"),
    (["share.stacks=middle"], "unknown share.stacks 'middle'; choose one of all, encoder, "
                              "decoder"),
    (["train.schedule=linear"], "unknown train.schedule 'linear'; choose one of cosine, "
                                "inverse-sqrt, constant"),
    (["train.parallel=zero"], "unknown train.parallel 'zero'; choose one of ddp, fsdp"),
    (["data.name=wiki"], "unknown data.name 'wiki'; choose one of brown, text, "
                         "libreoffice-de-en, parallel, debian-summaries, wordnet-supersense, "
                         "classes, espeak-en, espeak-asr"),
    (["share.method=dlt", "dlt.tie=alias"], "unknown dlt.tie 'alias'; choose one of shared, "
                                            "frozen-copy"),
])
def test_out_of_range_and_choices(sets, line):
    assert error_of(sets) == line


@pytest.mark.parametrize("sets, yaml_text, name, known_in", [
    (["trian.steps=3"], None, "trian", None),
    (["model.layer=3"], None, "model.layer", "model"),
    (["share.method.x=1"], None, None, None),  # method is a value, not a section
    ([], "train:\n  stpes: 5\n", "train.stpes", "train"),
    ([], "1: 2\n", "1", None),
    ([], "data: {name: brown, 1: x}\n", "data.1", "data"),
    ([], "share: {rnak: 4}\n", "share.rnak", "share"),
    ([], "eval: {beam: 4}\n", "eval.beam", "eval"),
    ([], "dlt: {gama: 0.5}\n", "dlt.gama", "dlt"),
    ([], "distill: {studnet: s}\n", "distill.studnet", "distill"),
])
def test_unknown_keys_are_named(tmp_path, sets, yaml_text, name, known_in):
    message = error_of(sets, yaml_text, tmp_path)
    if name is None:
        assert message.startswith("unknown share.method {'x': 1}")
        return
    assert message.startswith(f"unknown config key {name!r}; known")
    if known_in:
        assert f"known in {known_in}: " in message
    else:
        assert "known: data, model, train, share, eval, dlt, distill" in message


@pytest.mark.parametrize("sets, match", [
    (["share.method=lowrank", "share.transfer_at_step=2000"],
     r"share.transfer_at_step \(2000\) must be below train.steps \(1000\)"),
    (["share.transfer_at_step=10"], "needs a static share.method"),
    (["share.method=dlt", "share.transfer_at_step=10"], "needs a static share.method"),
    (["share.method=lowrank", "share.transfer_at_step=10", "train.parallel=fsdp"],
     "train.parallel=fsdp: share.transfer_at_step > 0"),
    (["model.arch=gpt2", "data.name=wordnet-supersense"], "model.arch=gpt2 is a language"),
    (["dlt.hidden=8"], "dlt.* keys are set but share.method is 'dense'"),
    (["share.method=dlt", "data.name=libreoffice-de-en"], "dlt ties one layer stack"),
    (["data.name=espeak-en"], "espeak-en is a speech test set"),
    (["distill.loss=lm"], r"distill.\* keys are set but distill.student is not"),
    (["distill.student=s"], "distill.teacher is required"),
    (["distill.student=s", "distill.teacher=t", "data.name=wordnet-supersense"],
     "distillation reads text"),
    (["distill.student=s", "distill.teacher=t", "share.method=residual"],
     "leave share.* at its defaults"),
    (["distill.student=s", "distill.teacher=t", "data.tokenizer=t.json"],
     "student's own tokenizer"),
    (["distill.student=s", "distill.teacher=t", "data.name=text"],
     "distillation on data.name=text needs data.train"),
    (["data.name=text"], "data.name=text needs data.train, data.valid and data.test"),
    (["data.name=parallel", "data.train=[a, b]"], "data.name=parallel needs data.train"),
    (["data.train=x.txt"], "data.train is only for your own files"),
    (["share.linears={a: q}"], "share: linears= needs stack= too"),
    (["share.matrices=[qq]"], r"share.matrices: unknown matrices \['qq'\]"),
    (["noequals"], "key=value"),
    (["data.name=brown", "data.name.x=1"], "not a section"),
])
def test_rules_across_keys(sets, match):
    with pytest.raises(LayershareError, match=match) as info:
        load_config(None, sets)
    assert "\n" not in str(info.value)


def test_what_is_accepted():
    """Numbers as YAML 1.1 and ``--set`` give them; empty sections; dense ignores rank."""
    cfg = load_config(None, ["train.lr=3e-4", "train.min_lr=0", "dlt=null",
                             "share.rank=0"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.min_lr, float)
    assert load_config(None, ["train.lr='3e-4'"]).train.lr == pytest.approx(3e-4)
    assert load_config(None, ["share.method=residual", "share.rank=0"]).share.rank == 0
    assert load_config(None, ["share.strategy=[0, 0, 1, 1]"]).share.strategy == [0, 0, 1, 1]
