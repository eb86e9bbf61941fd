"""The Q-learning agent of Dynamic Layer Tying (Hay & Wolf, ICLR 2024, arXiv 2401.12819).

**State.** ``s`` is a length-``L`` vector of layer ids: ``s_i = i`` when layer ``i`` trains on
its own, ``s_i = j < i`` when it is tied to (uses the weights of) layer ``j``; ``s_0 = 0``
always. ``state_encoding`` says how the network reads it (:func:`encode`):

* ``raw``: ``s / L``. Raw ids grow with depth (up to ``L - 1``), so the first layer's
  pre-activations would scale with ``L``; dividing by ``L`` keeps every input in ``[0, 1)``
  whatever the depth (the official code feeds ``s`` itself: an affine change of input, the
  same functions). Here "train independently" (``s_i = i``) is the *largest* input: with a
  bootstrapped target, Q-values that drift with the input's norm favour or punish it
  whatever the reward says.
* ``distance``: ``(i - s_i) / L``: 0 for an independent layer, larger the farther back the
  source. The same information; "independent" is now the zero input.
* ``one-hot``: the ``L x L`` indicator ``[s_i = j]`` flattened (input width ``L^2``): every
  state has the same norm, ``sqrt(L)``.

**Actions.** One MLP ``L -> hidden -> L(L+1)/2`` scores every decision of every layer at once.
Layer ``l`` owns the ``l + 1`` outputs ``[l(l+1)/2, l(l+1)/2 + l + 1)`` (:func:`action_slice`):
output ``a < l`` of its slice means "tie layer ``l`` to layer ``a``", ``a = l`` means "train
layer ``l`` independently". The slices of layers ``0..L-1`` tile the output exactly
(``sum_l (l + 1) = L(L+1)/2``); layer 0's one-output slice is never used.

**Policy.** epsilon-greedy restricted to the deciding layer's slice: with probability epsilon
a uniform action among its ``l + 1``, otherwise the argmax of ``Q(s)[slice(l)]``. Epsilon is
``max(epsilon_min, epsilon_start * epsilon_decay ** episode)`` (:func:`epsilon_at`).

**Learning.** One TD(0) update per action, no replay buffer (as the official code):
``loss = (Q(s)[slice(l)][a] - y)^2`` with ``y = r + gamma * max Q(s')[slice(l')]``, where
``s'`` is the state after the action and ``l'`` the layer that decides next: ``l + 1``, or
layer 1 of the next episode after layer ``L - 1``. The max runs over ``l'``'s slice only,
because those are the actions available at ``s'``; a max over the whole output would mix in
the values of other layers' decisions, which cannot be taken there. The walk never ends
(an episode boundary only advances the epsilon schedule), so no state is terminal. With
``target_network`` the bootstrap ``max Q(s')`` comes from a copy synced every
``target_sync`` updates (Mnih et al., 2015), which damps the feedback of a network chasing its
own estimates; the paper has none.
"""

from __future__ import annotations

import copy
import random

import torch
from torch import Tensor, nn

from ..errors import LayershareError
from .config import DLTConfig


def num_actions(num_layers: int) -> int:
    """Width of the Q-network's output: ``L(L+1)/2``."""
    return num_layers * (num_layers + 1) // 2


def action_slice(layer: int) -> slice:
    """Layer ``l``'s outputs: ``[l(l+1)/2, l(l+1)/2 + l + 1)``."""
    start = layer * (layer + 1) // 2
    return slice(start, start + layer + 1)


def epsilon_at(config: DLTConfig, episode: int) -> float:
    """Exploration rate of ``episode`` (0-based): decayed once per episode, floored."""
    return max(config.epsilon_min, config.epsilon_start * config.epsilon_decay ** episode)


def next_layer(layer: int, num_layers: int) -> int:
    """The layer that decides after ``layer``: the walk is 1, 2, ..., L-1, 1, 2, ..."""
    return layer + 1 if layer + 1 < num_layers else 1


ENCODINGS = ("raw", "distance", "one-hot")


def encode(state: Tensor, encoding: str = "raw") -> Tensor:
    """The Q-network's input for ``state`` ((..., L) layer ids): see the module docstring."""
    s = state.float()
    L = s.shape[-1]
    if encoding == "raw":
        return s / L
    if encoding == "distance":
        return (torch.arange(L, dtype=torch.float32) - s) / L
    if encoding == "one-hot":
        return nn.functional.one_hot(state.long(), L).float().flatten(-2)
    raise LayershareError(f"unknown state encoding {encoding!r}; choose one of "
                          f"{', '.join(ENCODINGS)}")


class QNetwork(nn.Module):
    """MLP ``in -> hidden -> L(L+1)/2`` with a ReLU, reading :func:`encode` of the state
    (``in`` = L, or L^2 for one-hot)."""

    def __init__(self, num_layers: int, hidden: int = 128, encoding: str = "raw"):
        super().__init__()
        self.num_layers, self.encoding = num_layers, encoding
        width = num_layers * num_layers if encoding == "one-hot" else num_layers
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_actions(num_layers)))

    def forward(self, state: Tensor) -> Tensor:
        """``state``: (..., L) layer ids (any dtype); returns (..., L(L+1)/2) Q-values."""
        return self.net(encode(state, self.encoding))


class Agent:
    """Q-network, its Adam optimiser, optional target network and the exploration RNG."""

    def __init__(self, num_layers: int, config: DLTConfig):
        if num_layers < 2:
            raise LayershareError(f"layer tying needs at least 2 layers, got {num_layers}")
        self.num_layers, self.config = num_layers, config
        with torch.random.fork_rng(devices=[]):  # own init, global RNG stream untouched
            torch.manual_seed(config.seed)
            self.q = QNetwork(num_layers, config.hidden, config.state_encoding)
        self.target = copy.deepcopy(self.q).requires_grad_(False) if config.target_network else None
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.q_lr)
        self.rng = random.Random(config.seed)
        self.updates = 0

    def _state(self, state) -> Tensor:
        s = torch.as_tensor(state, dtype=torch.float32)
        if s.shape != (self.num_layers,):
            raise LayershareError(f"a state has {self.num_layers} entries, got {tuple(s.shape)}")
        return s

    @torch.no_grad()
    def q_values(self, state, layer: int) -> Tensor:
        """``Q(s)`` restricted to ``layer``'s actions (length ``layer + 1``)."""
        return self.q(self._state(state))[action_slice(layer)]

    def act(self, state, layer: int, epsilon: float) -> tuple[int, bool]:
        """epsilon-greedy action of ``layer`` in ``state``; returns (action, explored)."""
        if not 1 <= layer < self.num_layers:
            raise LayershareError(f"layer {layer} cannot decide: only layers "
                                  f"1..{self.num_layers - 1} do")
        if self.rng.random() < epsilon:
            return self.rng.randrange(layer + 1), True
        return int(self.q_values(state, layer).argmax()), False

    @torch.no_grad()
    def td_target(self, reward: float, next_state, next_layer: int) -> float:
        """``y = r + gamma * max_a' Q(s')[slice(next_layer)][a']`` (target network if any)."""
        net = self.target if self.target is not None else self.q
        bootstrap = net(self._state(next_state))[action_slice(next_layer)].max()
        return float(reward + self.config.gamma * bootstrap)

    def update(self, state, layer: int, action: int, reward: float, next_state,
               next_layer: int) -> dict:
        """One TD(0) step on ``(s, l, a, r, s', l')``; returns loss, Q(s, a) and the target."""
        target = self.td_target(reward, next_state, next_layer)
        q = self.q(self._state(state))[action_slice(layer)][action]
        loss = (q - target) ** 2
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        if self.target is not None and self.updates % self.config.target_sync == 0:
            self.target.load_state_dict(self.q.state_dict())
        return {"td_loss": loss.detach().item(), "q": q.detach().item(), "target": target}

    def state_dict(self) -> dict:
        return {"q": self.q.state_dict(), "optimizer": self.optimizer.state_dict(),
                "target": None if self.target is None else self.target.state_dict(),
                "rng": self.rng.getstate(), "updates": self.updates}

    def load_state_dict(self, sd: dict) -> None:
        self.q.load_state_dict(sd["q"])
        self.optimizer.load_state_dict(sd["optimizer"])
        if self.target is not None:
            self.target.load_state_dict(sd["target"] if sd["target"] is not None else sd["q"])
        rng = sd["rng"]  # a JSON round trip turns the tuples of getstate() into lists
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))
        self.updates = sd["updates"]
