"""A short CPU run of the DLT controller on a tiny DecoderLM with synthetic data."""

import json
import math

import pytest
import torch
from dlt_helpers import tiny_lm

import layershare
from layershare.dlt import (
    DLTConfig,
    DLTController,
    TiedStack,
    epsilon_at,
    plot_heatmap,
    read_log,
    reward_from_loss,
)

KEYS = {"episode", "step", "layer", "action", "state", "reward", "epsilon"}


def batch(seed, n=4, t=12):
    """Counting sequences t, t+1, ... (mod vocab): learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 48, (n, 1), generator=g)
    return (start + torch.arange(t)) % 48


def adamw(model):
    params = list(model.parameters())
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=3e-3)


def train(model, opt, dlt, steps, first=1):
    for step in range(first, first + steps):
        model.loss(batch(step)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dlt.on_step(step, lambda: model.loss(batch(10_000 + step)))


def test_reward_forms():
    paper, log = DLTConfig(), DLTConfig(reward="neg-log-ppl")
    assert reward_from_loss(math.log(5.0), paper) == pytest.approx(-5.0)
    assert reward_from_loss(5.0, paper) == -10.0 == reward_from_loss(9.0, paper)  # no signal
    assert reward_from_loss(5.0, log) == -5.0 and reward_from_loss(9.0, log) == -9.0
    assert reward_from_loss(25.0, log) == -10.0
    assert reward_from_loss(float("nan"), paper) == -10.0


def test_short_run_changes_the_state_and_logs(tmp_path):
    model = tiny_lm(4)
    opt = adamw(model)
    cfg = DLTConfig(steps_per_action=2, epsilon_decay=0.5, seed=1, reward="neg-log-ppl")
    dlt = DLTController(model, opt, cfg, log_path=tmp_path / "dlt.jsonl")
    train(model, opt, dlt, 48)  # 24 rewarded actions = 8 episodes of layers 1, 2, 3
    dlt.close()

    records = read_log(tmp_path / "dlt.jsonl")
    assert len(records) == 25 and records[-1]["reward"] is None
    assert all(KEYS <= set(r) for r in records)
    assert [r["layer"] for r in records] == [1, 2, 3] * 8 + [1]
    assert [r["episode"] for r in records] == [e for e in range(8) for _ in range(3)] + [8]
    assert [r["step"] for r in records] == list(range(0, 50, 2))
    assert all(r["epsilon"] == pytest.approx(epsilon_at(cfg, r["episode"])) for r in records)
    assert all(-10 <= r["reward"] < 0 for r in records[:-1])
    for prev, r in zip([None] + records, records):  # one layer changes per action
        assert r["state"][r["layer"]] == r["action"] and r["state"][0] == 0
        if prev is not None:
            assert [a for i, a in enumerate(r["state"]) if i != r["layer"]] == \
                   [a for i, a in enumerate(prev["state"]) if i != r["layer"]]
    assert any(r["state"] != [0, 1, 2, 3] for r in records)  # the agent did tie layers
    assert records[-1]["state"] == dlt.state

    # the model and the optimizer follow the final state
    assert TiedStack(model).roots() == dlt.tied.roots()
    unique = {id(p) for p in model.parameters()}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == unique
    summary = dlt.summary()
    assert summary["unique_layers"] == len(set(dlt.tied.roots()))
    assert summary["unique_layer_params"] == layershare.count(model).layer_params

    grid = plot_heatmap(tmp_path / "dlt.jsonl", tmp_path / "dlt.png")
    assert grid.shape == (4, 9) and grid[:, -1].tolist() == dlt.state
    assert (tmp_path / "dlt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    dlt.save(tmp_path / "final")
    loaded = layershare.load(tmp_path / "final")
    ids = batch(7)
    model.eval()
    assert torch.allclose(loaded(ids), model(ids), atol=1e-5)


def test_random_baseline_keeps_epsilon_one(tmp_path):
    model = tiny_lm(3)
    dlt = DLTController(model, adamw, DLTConfig(steps_per_action=1, epsilon_decay=1.0))
    opt = dlt.optimizer  # built by the factory, synced to the first action already
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.parameters()}
    train(model, opt, dlt, 12)
    assert dlt.epsilon == 1.0 and dlt.episode == 6 and dlt.pending["explored"]


def test_two_layers_every_action_is_an_episode():
    model = tiny_lm(2)
    opt = adamw(model)
    dlt = DLTController(model, opt, DLTConfig(steps_per_action=1))
    train(model, opt, dlt, 3)
    assert (dlt.episode, dlt.layer, dlt.epsilon) == (3, 1, pytest.approx(0.95 ** 3))


def test_resume_continues_the_walk(tmp_path):
    model = tiny_lm(4)
    opt = adamw(model)
    cfg = DLTConfig(steps_per_action=2, seed=4)
    dlt = DLTController(model, opt, cfg, log_path=tmp_path / "dlt.jsonl")
    train(model, opt, dlt, 10)
    sd = dlt.state_dict()
    dlt.save(tmp_path / "ck")
    torch.save(sd, tmp_path / "agent.pt")

    loaded = layershare.load(tmp_path / "ck").train()
    opt2 = adamw(loaded)
    sd = torch.load(tmp_path / "agent.pt", weights_only=True)
    again = DLTController(loaded, opt2, cfg, log_path=tmp_path / "dlt.jsonl", resume=sd)
    assert (again.episode, again.layer, again.state) == (dlt.episode, dlt.layer, dlt.state)
    train(loaded, opt2, again, 6, first=11)
    lines = (tmp_path / "dlt.jsonl").read_text().splitlines()
    assert len(lines) == 5 + 3 and [json.loads(x)["step"] for x in lines] == list(range(0, 16, 2))
    assert loaded.layershare_config.strategy == again.tied.roots()  # marks kept current
