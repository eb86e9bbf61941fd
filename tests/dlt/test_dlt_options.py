"""Issue 16's agent options: presets, state encodings, EMA baseline, shuffled rewards, the
official start state, frozen-copy ties, and the static-memory figures."""

import pytest
import torch
from dlt_helpers import tiny_lm

from layershare.dlt import DLTConfig, DLTController, TiedStack
from layershare.dlt.agent import QNetwork, encode
from layershare.dlt.controller import Baseline
from layershare.dlt.synthetic import SyntheticStack
from layershare.errors import LayershareError
from layershare.train.memory import closed_form_bytes, tensor_bytes


def test_presets_fill_only_unset_keys():
    paper, honest = DLTConfig(), DLTConfig(preset="honest")
    assert (paper.gamma, paper.reward_baseline, paper.reward_source, paper.state_encoding,
            paper.reward) == (0.99, "none", "train", "raw", "paper")
    assert (honest.gamma, honest.reward_baseline, honest.reward_source, honest.state_encoding,
            honest.reward) == (0.0, "ema", "valid", "distance", "neg-log-ppl")
    mixed = DLTConfig(preset="honest", gamma=0.5, state_encoding="one-hot")
    assert (mixed.gamma, mixed.state_encoding, mixed.reward_baseline) == (0.5, "one-hot", "ema")
    assert DLTConfig(**DLTConfig(preset="honest").to_dict()) == honest  # round trip
    help_ = DLTConfig.help()
    for key in ("preset", "reward_source", "reward_baseline", "gamma", "state_encoding", "tie",
                "start", "shuffle_rewards"):
        assert len(help_[key]) > 40
    for bad in ({"preset": "fast"}, {"tie": "alias"}, {"start": "zeros"},
                {"state_encoding": "ids"}, {"reward_source": "test"}, {"shuffle_rewards": 1},
                {"baseline_decay": 1.5}, {"reward_batches": 0}):
        with pytest.raises(LayershareError):
            DLTConfig(**bad)


def test_encodings():
    s = torch.tensor([0, 0, 2, 1])
    assert encode(s, "raw").tolist() == [0, 0, 0.5, 0.25]
    assert encode(s, "distance").tolist() == [0, 0.25, 0, 0.5]  # (i - s_i) / L
    one_hot = encode(s, "one-hot").view(4, 4)
    assert one_hot.sum().item() == 4 and one_hot[2, 2] == 1 and one_hot[3, 1] == 1
    assert QNetwork(4, 8, "one-hot").net[0].in_features == 16
    with pytest.raises(LayershareError):
        encode(s, "ids")


def test_ema_baseline_centres_the_reward():
    b = Baseline(0.5)
    assert b.centre(-4.0) == 0.0 and b.value == -4.0  # starts at the first reward
    assert b.centre(-2.0) == 2.0 and b.value == -3.0
    assert b.centre(-3.0) == 0.0


def _synthetic(cfg, rewards):
    stack = SyntheticStack(4)
    dlt = DLTController(None, None, cfg, stack=stack)
    records = [dlt.on_step(i + 1, lambda: loss) for i, loss in enumerate(rewards)]
    return dlt, records


def test_shuffled_rewards_are_a_permutation_within_each_episode(monkeypatch):
    cfg = DLTConfig(steps_per_action=1, reward="neg-log-ppl", shuffle_rewards=True, seed=2)
    seen = []
    real = __import__("layershare.dlt.agent", fromlist=["Agent"]).Agent.update

    def spy(self, state, layer, action, reward, next_state, next_layer):
        seen.append((layer, reward))
        return real(self, state, layer, action, reward, next_state, next_layer)

    monkeypatch.setattr("layershare.dlt.agent.Agent.update", spy)
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # two episodes of layers 1, 2, 3
    dlt, records = _synthetic(cfg, losses)
    assert [r["td_loss"] is None for r in records] == [True, True, False] * 2  # at episode ends
    assert [layer for layer, _ in seen] == [1, 2, 3, 1, 2, 3]
    assert sorted(r for _, r in seen[:3]) == [-3.0, -2.0, -1.0]
    assert sorted(r for _, r in seen[3:]) == [-6.0, -5.0, -4.0]
    assert [r for _, r in seen] != [-x for x in losses]  # this seed does permute
    assert dlt.state_dict()["waiting"] == []


def test_official_start_ties_every_layer_to_layer_0():
    model = tiny_lm(4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dlt = DLTController(model, opt, DLTConfig(start="official", epsilon_start=0.0))
    first = dlt.pending
    assert first["before"] == [0, 0, 0, 0] and first["layer"] == 1
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.parameters()}
    assert dlt.tied.unique_layers() <= 2  # layer 0, plus layer 1 if its first action unties


def _frozen_pair():
    model = tiny_lm(3)
    tied = TiedStack(model, tie="frozen-copy")
    tied.apply([0, 0, 2])
    return model, tied


def test_frozen_copy_tied_use_sends_no_gradient_and_keeps_one_tensor():
    ids = torch.randint(0, 48, (2, 10))
    model, tied = _frozen_pair()
    assert all(tied.param(1, k) is tied.param(0, k) for k in range(len(tied.holders[0])))
    model.loss(ids).backward()
    frozen = [tied.param(0, k).grad.clone() for k in range(len(tied.holders[0]))]

    # the same computation with layer 1 an explicit detached copy of layer 0
    ref = tiny_lm(3)
    ref_stack = TiedStack(ref)
    with torch.no_grad():
        for k, (_, m, slot) in enumerate(ref_stack.holders[1]):
            m._parameters[slot] = torch.nn.Parameter(ref_stack.param(0, k).detach(),
                                                     requires_grad=False)
    ref.loss(ids).backward()
    for k, g in enumerate(frozen):
        assert torch.allclose(g, ref_stack.param(0, k).grad, atol=1e-6)

    shared = tiny_lm(3)
    TiedStack(shared).apply([0, 0, 2])  # the gradient of both uses, summed
    shared.loss(ids).backward()
    assert not all(torch.allclose(g, TiedStack(shared).param(0, k).grad, atol=1e-6)
                   for k, g in enumerate(frozen))


def test_frozen_copy_untie_is_a_trainable_real_copy_and_hooks_go():
    model, tied = _frozen_pair()
    assert set(tied.hooks) == {1}
    origins = tied.apply([0, 1, 2])
    assert tied.hooks == {} and len(origins) == len(tied.holders[1])
    for k in range(len(tied.holders[1])):
        c, s = tied.param(1, k), tied.param(0, k)
        assert c is not s and c.requires_grad and c.data_ptr() != s.data_ptr()
        assert origins[c] is s


def test_static_memory_equals_the_closed_form_when_tied():
    model = tiny_lm(4)
    TiedStack(model).apply([0, 0, 0, 3])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.loss(torch.randint(0, 48, (2, 10))).backward()
    opt.step()
    steps = sum(st["step"].numel() * st["step"].element_size() for st in opt.state.values())
    unique = sum(p.numel() for p in model.parameters())
    assert closed_form_bytes(model) == 16 * unique  # fp32: weight, grad, two moments
    assert tensor_bytes(model, opt) == closed_form_bytes(model) + steps
    dense = tiny_lm(4)
    assert closed_form_bytes(dense) > closed_form_bytes(model)
