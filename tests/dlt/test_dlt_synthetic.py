"""G1/G2 of issue 16: does the agent follow its reward? A model-free environment whose loss
is a known function of the tying (:mod:`layershare.dlt.synthetic`), 6 layers, epsilon at its
floor after 30% of the run, the converged tying = mean unique layers over the last 20% of
the actions, averaged over 4 seeds (every run is seeded: the figures are deterministic; the
margins below are several times the seed-to-seed spread of the means).

The paper preset is recorded as it behaves -- it fails both checks -- and the honest preset
(gamma 0, EMA-centred reward, distance encoding) passes both.
"""

import pytest

from layershare.dlt import DLTConfig
from layershare.dlt.synthetic import SyntheticStack, floor_decay, mean_unique, run

L, SEEDS = 6, range(4)


def converged(preset, delta, actions, **keys):
    cfg = DLTConfig(preset=preset, epsilon_decay=floor_decay(actions, L), **keys)
    return mean_unique(cfg, delta, seeds=SEEDS, num_layers=L, actions=actions)


def test_environment_is_the_known_function_and_seeded():
    stack = SyntheticStack(4)
    stack.apply([0, 0, 1, 3])
    assert stack.roots() == [0, 0, 0, 3] and stack.unique_layers() == 2
    cfg = DLTConfig(epsilon_decay=floor_decay(60, 4))
    a, b = run(cfg, 0.05, num_layers=4, actions=60), run(cfg, 0.05, num_layers=4, actions=60)
    assert a == b and len(a["curve"]) == 60
    assert floor_decay(500, 6) ** 30 == pytest.approx(0.01)  # 100 episodes, floor at 30


@pytest.mark.parametrize("preset, follows", [("paper", False), ("honest", True)])
def test_g1_delta_zero_tying_does_not_depend_on_the_encoding(preset, follows):
    """delta = 0: no tying is better, so raw ids and distances must converge alike. The paper
    preset's bootstrap (gamma 0.99, all-negative rewards) ranks actions by the next state's
    input instead: raw ids push towards ~1.9 unique layers, distances towards ~3.1."""
    raw = converged(preset, 0.0, 1000, state_encoding="raw")
    distance = converged(preset, 0.0, 1000, state_encoding="distance")
    if follows:
        assert abs(raw - distance) < 0.6, (raw, distance)
    else:
        assert distance - raw > 0.8, (raw, distance)


@pytest.mark.parametrize("preset, follows", [("paper", False), ("honest", True)])
def test_g2_agent_follows_the_sign_of_delta(preset, follows):
    """delta = +0.05: tying costs, the optimum is 6 unique layers; -0.05: tying pays, 1.
    Uniformly random tying of 6 layers averages H_6 = 2.45 unique layers."""
    plus, minus = converged(preset, 0.05, 500), converged(preset, -0.05, 500)
    if follows:
        assert plus > 3.2 and minus < 1.8, (plus, minus)
    else:
        assert abs(plus - minus) < 0.5, (plus, minus)
