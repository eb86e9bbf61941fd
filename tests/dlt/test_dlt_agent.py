"""Q-network shape and slices, epsilon schedule, greedy choice, TD update (Hay & Wolf 2024)."""

import math

import pytest
import torch

from layershare.dlt import Agent, DLTConfig, QNetwork, action_slice, epsilon_at, next_layer
from layershare.dlt.agent import num_actions
from layershare.errors import LayershareError


@pytest.mark.parametrize("L", range(1, 7))
def test_q_network_output_and_slices_tile_it(L):
    q = QNetwork(L, hidden=8)
    out = q(torch.arange(L))
    assert out.shape == (L * (L + 1) // 2,) == (num_actions(L),)
    covered = []
    for layer in range(L):
        sl = action_slice(layer)
        assert sl.start == layer * (layer + 1) // 2 and sl.stop - sl.start == layer + 1
        covered += list(range(sl.start, sl.stop))
    assert covered == list(range(num_actions(L)))  # consecutive, disjoint, complete


def test_network_reads_state_divided_by_L():
    q = QNetwork(4, hidden=8)
    s = torch.tensor([0, 0, 2, 1])
    assert torch.allclose(q(s), q.net(s.float() / 4))


def test_epsilon_schedule_and_floor():
    c = DLTConfig()
    assert epsilon_at(c, 0) == 1.0
    assert epsilon_at(c, 1) == pytest.approx(0.95)
    assert epsilon_at(c, 10) == pytest.approx(0.95 ** 10)
    first_floor = math.ceil(math.log(0.01) / math.log(0.95))  # 90
    assert epsilon_at(c, first_floor - 1) > 0.01
    assert epsilon_at(c, first_floor) == 0.01 == epsilon_at(c, 10_000)
    random_baseline = DLTConfig(epsilon_decay=1.0)
    assert {epsilon_at(random_baseline, e) for e in range(200)} == {1.0}


def test_walk_is_1_to_L_minus_1_then_again():
    assert [next_layer(l, 4) for l in (1, 2, 3)] == [2, 3, 1]
    assert next_layer(1, 2) == 1


def test_greedy_picks_argmax_within_the_slice_only():
    agent = Agent(4, DLTConfig(hidden=4))
    last = agent.q.net[2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.arange(10.0))  # global argmax 9 (layer 3's slice)
        last.bias[4] = 50.0                  # layer 2's slice is [3, 6): its best is 4 -> action 1
        last.bias[0] = 99.0                  # layer 0's slice, never a candidate for layer 2
    assert agent.act([0, 1, 2, 3], 2, epsilon=0.0) == (1, False)
    assert agent.act([0, 1, 2, 3], 3, epsilon=0.0) == (3, False)  # [6, 10): 9 -> action 3


def test_exploration_is_uniform_over_the_layers_actions():
    agent = Agent(5, DLTConfig(seed=3))
    seen = {agent.act([0, 1, 2, 3, 4], 3, epsilon=1.0) for _ in range(300)}
    assert seen == {(a, True) for a in range(4)}
    with pytest.raises(LayershareError):
        agent.act([0, 1, 2, 3, 4], 0, epsilon=1.0)  # layer 0 never decides


def _q_by_hand(agent, state):
    w1, b1 = agent.q.net[0].weight.detach(), agent.q.net[0].bias.detach()
    w2, b2 = agent.q.net[2].weight.detach(), agent.q.net[2].bias.detach()
    x = torch.tensor(state, dtype=torch.float32) / len(state)
    return w2 @ torch.relu(w1 @ x + b1) + b2


def test_td_target_against_hand_computation():
    agent = Agent(4, DLTConfig(gamma=0.9, hidden=8))
    s_next = [0, 0, 2, 3]
    q_next = _q_by_hand(agent, s_next)
    expected = -3.0 + 0.9 * q_next[3:6].max().item()  # next layer 2 reads [3, 6)
    assert agent.td_target(-3.0, s_next, 2) == pytest.approx(expected, abs=1e-6)


def test_update_moves_only_the_chosen_output_towards_the_target():
    agent = Agent(4, DLTConfig(hidden=8, q_lr=1e-2))
    s, s_next = [0, 1, 2, 3], [0, 0, 2, 3]
    w2_before = agent.q.net[2].weight.detach().clone()
    q_before = _q_by_hand(agent, s)[1 + 0].item()  # layer 1, action 0: output 1
    out = agent.update(s, 1, 0, reward=-5.0, next_state=s_next, next_layer=2)
    assert out["q"] == pytest.approx(q_before, abs=1e-6)
    assert out["td_loss"] == pytest.approx((q_before - out["target"]) ** 2, rel=1e-5)
    q_after = _q_by_hand(agent, s)[1].item()
    assert abs(q_after - out["target"]) < abs(q_before - out["target"])
    changed = (agent.q.net[2].weight.detach() != w2_before).any(dim=1)
    assert changed.tolist() == [i == 1 for i in range(10)]  # only output row 1 got a gradient


def test_target_network_lags_and_syncs():
    agent = Agent(3, DLTConfig(hidden=8, target_network=True, target_sync=2, q_lr=1e-2))
    same = lambda: all(torch.equal(a, b) for a, b in zip(agent.q.parameters(),  # noqa: E731
                                                         agent.target.parameters()))
    assert same()
    agent.update([0, 1, 2], 1, 0, -1.0, [0, 0, 2], 2)
    assert not same()
    agent.update([0, 0, 2], 2, 2, -1.0, [0, 0, 2], 1)
    assert same()


def test_agent_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = Agent(4, DLTConfig(seed=7))
    assert torch.equal(torch.rand(3), expected)
    b = Agent(4, DLTConfig(seed=7))
    assert all(torch.equal(x, y) for x, y in zip(a.q.parameters(), b.q.parameters()))


def test_config_validation():
    with pytest.raises(LayershareError):
        DLTConfig(reward="ppl")
    with pytest.raises(LayershareError):
        DLTConfig(epsilon_decay=1.5)
    with pytest.raises(LayershareError):
        DLTConfig(steps_per_action=0)
    with pytest.raises(LayershareError):
        Agent(1, DLTConfig())
    assert "q_lr" in DLTConfig.help()
