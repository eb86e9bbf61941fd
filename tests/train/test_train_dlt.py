"""Dynamic layer tying as a trainer plugin (share.method=dlt): short CPU runs on tiny data."""

import json

import pytest
import torch
from train_helpers import tiny, weights

import layershare
from layershare.cli.share import inspect_report
from layershare.dlt import TiedStack, read_log, state_tensors
from layershare.errors import LayershareError
from layershare.train import describe, dlt_plugin, load_config, lr_at, train
from layershare.train.report import read_metrics
from layershare.train.trainer import Trainer

KEYS = {"episode", "step", "layer", "action", "state", "reward", "epsilon"}
DLT = {"steps_per_action": 2, "epsilon_decay": 0.7, "reward": "neg-log-ppl", "seed": 1}


def dlt_sets(data, steps=24, **train_kv):
    return tiny(data, "text", model={"layers": 4}, share={"method": "dlt"}, dlt=DLT,
                train={"steps": steps, "eval_every": 8, "save_every": 8, **train_kv})


def run(cfg, out):
    """``train`` by hand, keeping the trainer (its optimizer) for inspection."""
    trainer = Trainer(cfg, out, progress=False)
    trainer.setup()
    trainer.build()
    trainer.fit()
    return trainer, trainer.finish()


def test_dlt_run_ties_layers_and_saves_unique_layers(tmp_path, text_data):
    out = tmp_path / "run"
    cfg = load_config(None, dlt_sets(text_data))
    trainer, results = run(cfg, out)

    records = read_log(out / "dlt.jsonl")
    assert len(records) == 24 // 2 and all(KEYS <= set(r) for r in records)
    assert [r["step"] for r in records] == list(range(0, 24, 2))  # none after the last step
    assert records[-1]["reward"] is None and all(r["reward"] < 0 for r in records[:-1])
    assert any(r["state"] != [0, 1, 2, 3] for r in records)  # the agent did tie layers
    assert (out / "dlt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    final = trainer.dlt.controller
    assert results["dlt_state"] == final.state == records[-1]["state"]
    assert results["unique_layers"] == len(set(final.tied.roots())) < 4
    assert results["method"] == "dlt"
    assert json.loads((out / "results.json").read_text()) == results

    # optimizer: exactly the unique parameters, Adam moments for each and no more
    unique = list(trainer.model.parameters())
    held = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in held} == {id(p) for p in unique} and len(held) == len(unique)
    assert state_tensors(trainer.optimizer) == 2 * len(unique)
    dense = len(list(TiedStack(trainer.model).layers[0].parameters()))
    assert len(unique) == len(list(trainer.task.build_model().parameters())) - \
        dense * (4 - results["unique_layers"])

    # the schedule still drives every group's learning rate
    t = cfg.train
    for row in read_metrics(out / "metrics.jsonl"):
        if row["split"] == "train":
            assert row["lr"] == pytest.approx(lr_at(row["step"] - 1, t.lr, t.warmup, t.steps))

    # OUT/model (the best checkpoint's tying) stores unique layers only
    model = layershare.load(out / "model")
    roots = results["dlt"]["test_model_roots"]
    assert TiedStack(model).roots() == roots
    per_layer = TiedStack(model).layer_params()
    assert layershare.count(model).layer_params == len(set(roots)) * per_layer
    assert inspect_report(out / "model")["layer_params"] == len(set(roots)) * per_layer
    assert results["layer_params"] == len(set(roots)) * per_layer
    last = layershare.load(out / "checkpoints" / "last" / "model")
    assert TiedStack(last).roots() == final.tied.roots()


def test_interrupted_run_resumes_to_the_same_end(tmp_path, text_data, monkeypatch):
    sets = dlt_sets(text_data, steps=24, save_every=4) + ["model.dropout=0.1"]
    whole = train(load_config(None, sets), tmp_path / "whole", progress=False)

    real = dlt_plugin.DLTPlugin.after_step

    def crash(self, step, total):
        if step == 15:
            raise KeyboardInterrupt("simulated crash")
        return real(self, step, total)

    broken = tmp_path / "broken"
    monkeypatch.setattr(dlt_plugin.DLTPlugin, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(None, sets), broken, progress=False)
    assert json.loads((broken / "checkpoints" / "last" / "info.json").read_text())["step"] == 12
    monkeypatch.setattr(dlt_plugin.DLTPlugin, "after_step", real)
    starts, init = [], dlt_plugin.DLTPlugin.__init__

    def spy(self, trainer, resume=None):
        starts.append((trainer.step, resume is not None))
        init(self, trainer, resume)

    monkeypatch.setattr(dlt_plugin.DLTPlugin, "__init__", spy)
    resumed = train(load_config(None, sets), broken, progress=False)
    assert starts == [(12, True)]  # resumed from the checkpoint, agent state restored

    a = weights(tmp_path / "whole" / "checkpoints" / "last" / "model")
    b = weights(broken / "checkpoints" / "last" / "model")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert read_log(broken / "dlt.jsonl") == read_log(tmp_path / "whole" / "dlt.jsonl")
    assert resumed["dlt"] == whole["dlt"] and resumed["test_ppl"] == whole["test_ppl"]


def test_ddp_is_refused(tmp_path, text_data, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LayershareError, match="one process"):
        train(load_config(None, dlt_sets(text_data)), tmp_path / "run", progress=False)


@pytest.mark.parametrize("sets, match", [
    (["share.method=dlt", "dlt.nope=1"], r"dlt\.nope"),
    (["share.method=dlt", "dlt.steps_per_action=0"], r"dlt\.steps_per_action"),
    (["share.method=dlt", "dlt.epsilon_decay=1.5"], r"dlt\.epsilon_decay"),
    (["share.method=dlt", "dlt.reward=ppl"], r"dlt\.reward"),
    (["share.method=dlt", "dlt.target_network=maybe"], r"dlt\.target_network"),
    (["dlt.steps_per_action=2"], "share.method=dlt"),  # would silently do nothing
    (["share.method=dlt", "share.transfer_at_step=10"], "transfer_at_step"),
    (["share.method=dlt", "data.name=libreoffice-de-en"], "translation"),
    (["model.arch=gpt3"], "model.arch"),
    (["model.arch=gpt2", "data.name=wordnet-supersense"], "language model"),
])
def test_dlt_config_checks(sets, match):
    with pytest.raises(LayershareError, match=match):
        load_config(None, sets)


def test_dlt_config_keys():
    cfg = load_config(None, ["share.method=dlt", "dlt.steps_per_action=8", "dlt.epsilon_decay=1",
                             "dlt.target_network=true", "dlt.q_lr=3e-4"])
    assert cfg.dlt.steps_per_action == 8 and cfg.dlt.epsilon_decay == 1.0
    assert cfg.dlt.target_network is True and cfg.dlt.q_lr == pytest.approx(3e-4)
    assert cfg.to_dict()["dlt"]["steps_per_action"] == 8
    assert any(line.startswith("dlt.epsilon_decay") for line in describe())  # --help-config


def test_gpt2_dlt_run(tmp_path, text_data):
    sets = tiny(text_data, "text", model={"layers": 3, "arch": "gpt2"}, share={"method": "dlt"},
                dlt={"steps_per_action": 1, "seed": 2},
                train={"steps": 8, "eval_every": 4, "save_every": 4})
    results = train(load_config(None, sets), tmp_path / "run", progress=False)
    model = layershare.load(tmp_path / "run" / "model")
    assert type(model).__name__ == "GPT2LMHeadModel"
    roots = results["dlt"]["test_model_roots"]
    assert TiedStack(model).roots() == roots
    assert layershare.count(model).layer_params == len(set(roots)) * TiedStack(model).layer_params()
    assert len(read_log(tmp_path / "run" / "dlt.jsonl")) == 8
    assert _eval_test(tmp_path / "run")["test_ppl"] == pytest.approx(results["test_ppl"], rel=1e-5)


def test_dlt_on_a_classifier(tmp_path, class_data):
    sets = tiny(class_data, "classes", model={"layers": 3}, share={"method": "dlt"},
                dlt={"steps_per_action": 1, "seed": 3},
                train={"steps": 6, "eval_every": 3, "save_every": 3})
    results = train(load_config(None, sets), tmp_path / "run", progress=False)
    model = layershare.load(tmp_path / "run" / "model")
    assert TiedStack(model).roots() == results["dlt"]["test_model_roots"]
    assert len(read_log(tmp_path / "run" / "dlt.jsonl")) == 6
    assert 0 <= results["test_acc"] <= 1  # and the saved (tied) model is the one tested:
    assert _eval_test(tmp_path / "run")["test_acc"] == pytest.approx(results["test_acc"])


def _eval_test(run):
    """``layershare eval RUN --split test`` of the saved model, as a dict."""
    import contextlib
    import io
    import json

    from layershare.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["eval", "--trust-config", str(run), "--split", "test"]) == 0
    return json.loads(buf.getvalue())


def test_cut_log_keeps_actions_rewarded_before_the_checkpoint(tmp_path):
    log = tmp_path / "dlt.jsonl"
    rows = [{"step": s, "reward": -1.0} for s in (0, 2, 4, 6)] + [{"step": 8, "reward": None}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 1')  # cut by a kill
    dlt_plugin.cut_log(log, {"step": 4})
    assert read_log(log) == rows[:2]
    dlt_plugin.cut_log(log, None)  # a finished run's null line goes, rewarded lines stay
    assert read_log(log) == rows[:2]


def test_honest_frozen_copy_run_rewards_on_valid_and_reports_memory(tmp_path, text_data,
                                                                    monkeypatch):
    """preset honest (validation reward, EMA baseline), frozen-copy ties, shuffled rewards:
    a whole run, with the three memory figures in results.json."""
    sets = tiny(text_data, "text", model={"layers": 4}, share={"method": "dlt"},
                dlt={"steps_per_action": 2, "epsilon_decay": 0.7, "seed": 1, "preset": "honest",
                     "tie": "frozen-copy", "shuffle_rewards": True, "reward_batches": 2},
                train={"steps": 16, "eval_every": 8, "save_every": 8})
    cfg = load_config(None, sets)
    assert (cfg.dlt.reward_source, cfg.dlt.gamma) == ("valid", 0.0)
    losses = []
    real = dlt_plugin.DLTPlugin.reward_loss

    def spy(self, step):
        losses.append(real(self, step))
        return losses[-1]

    monkeypatch.setattr(dlt_plugin.DLTPlugin, "reward_loss", spy)
    trainer, results = run(cfg, tmp_path / "run")
    plugin = trainer.dlt
    assert len(plugin.valid_batches) == 2 and len(losses) == 16 // 2 - 1
    again = real(plugin, 3)  # the same fixed batches whatever the step
    assert again == pytest.approx(real(plugin, 11))
    records = read_log(tmp_path / "run" / "dlt.jsonl")
    assert records[0]["reward_used"] == 0.0  # centred on the first reward
    assert trainer.dlt.controller.tied.tie == "frozen-copy"
    assert results["static_mem_kind"] == "params+grads+optimizer_state_bytes"
    assert results["closed_form_mem_bytes"] <= results["static_mem_bytes"] \
        < results["closed_form_mem_bytes"] + 4096  # + Adam's scalar step tensors
    assert results["peak_mem_bytes"] > results["static_mem_bytes"]
