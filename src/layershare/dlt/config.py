"""DLTConfig: every constant of Dynamic Layer Tying, with the paper's values as defaults.

Hay & Wolf, "Dynamic Layer Tying for Parameter-Efficient Transformers" (ICLR 2024,
arXiv 2401.12819); official research code github.com/tamirdh/Dynamic-Layer-Tying
(``code/dqn_trainer.py``, ``code/quantum_models.py``). The defaults take the paper's
*constants*: an MLP ``L -> 128 -> L(L+1)/2``, epsilon-greedy from 1.0 decayed x0.95 per
episode to 0.01, one action every 4 optimizer steps, reward ``-perplexity`` of one training
batch clipped to [-10, 10], TD target ``r + 0.99 max Q(s')``, one TD update per action, no
replay buffer, no target network.

**Where the defaults do not reproduce the official code** (each is a choice, listed so that
no figure is read as "the official code's"):

1. *Start state.* The official run starts from ``s = [0, ..., 0]`` with blocks 1..L-1
   frozen at their own random initialisation (so the state vector says "tied to layer 0"
   while the weights are not layer 0's). Default here: ``start: dense`` (every layer
   independent, ``s_i = i``). ``start: official`` starts from ``[0, ..., 0]`` applied as the
   vector says: every block really uses layer 0's weights.
2. *Tie semantics.* Official: a tied block's parameters alias the source's storage
   (``.data =``) with ``requires_grad = False``: the tied use sends no gradient. Its
   "untie" only sets ``requires_grad = True`` on the still-aliased tensor, so after a few
   episodes several trainable blocks share one storage and are updated by several AdamW
   states at once. Default here: ``tie: shared`` -- one tensor, gradients of every use
   summed (ALBERT's semantics); ``tie: frozen-copy`` is the official semantics (the tied
   use reads the source's live weights, no gradient) *without* the aliasing bug. In both,
   untying makes a real copy with fresh optimizer state.
3. *TD bootstrap slice.* Official: ``max Q(s')`` over the slice of the layer that just
   acted. Here: over the slice of the layer that acts next in ``s'`` (the actions available
   there), see :mod:`.agent`.
4. *Q-network input.* Official: raw layer ids ``s``. Here ``state_encoding: raw`` reads
   ``s / L`` (an affine change of input: same function class, inputs in [0, 1) at any depth).
5. *Q-network optimiser.* Official: AdamW(lr 1e-3, weight decay 0.01). Here Adam(lr 1e-3).
6. *Reward batch.* Official: the first batch of a freshly shuffled training loader, after
   ``model.eval()``. Here: the next step's first training micro-batch, in eval mode
   (``reward_source: train``), or a fixed set of validation batches (``valid``).

The random-tying baseline is ``epsilon_start=1, epsilon_decay=1`` (epsilon stays 1: every
action uniform at random); a purely greedy agent is ``epsilon_start=0``.

**Presets.** ``preset: paper`` (default) fills the unset keys ``gamma``, ``reward_baseline``,
``reward_source``, ``state_encoding`` and ``reward`` with the paper's values
(0.99, none, train, raw, paper); ``preset: honest`` with 0, ema, valid, distance and
neg-log-ppl -- an agent whose greedy choice follows the measured effect of its action (see
:mod:`.synthetic`). ``neg-log-ppl`` is part of ``honest`` because at validation perplexities
above ``reward_clip`` the paper's clipped reward is the constant -10: no signal to centre.
A key set explicitly always wins over the preset.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from pydantic import Field, model_validator

from ..configbase import Bool, Int, Number, Section

Reward = Literal["paper", "neg-log-ppl"]
REWARDS = get_args(Reward)
PRESETS = {
    "paper": {"gamma": 0.99, "reward_baseline": "none", "reward_source": "train",
              "state_encoding": "raw", "reward": "paper"},
    "honest": {"gamma": 0.0, "reward_baseline": "ema", "reward_source": "valid",
               "state_encoding": "distance", "reward": "neg-log-ppl"},
}


class DLTConfig(Section):
    where: ClassVar[str] = "dlt"

    preset: Literal["paper", "honest"] = Field("paper", description=(
        "paper | honest: the values of gamma, reward_baseline, reward_source, "
        "state_encoding and reward that are not set explicitly. paper: 0.99, none, train, "
        "raw, paper. honest: 0, ema, valid, distance, neg-log-ppl (an agent that follows "
        "its reward)"))
    steps_per_action: Int = Field(4, ge=1, description=(
        "optimizer steps between two agent actions (paper: 4)"))
    epsilon_start: Number = Field(1.0, ge=0, le=1, description=(
        "exploration rate of the first episode (paper: 1.0)"))
    epsilon_decay: Number = Field(0.95, ge=0, le=1, description=(
        "epsilon is multiplied by this after every episode (paper: 0.95; 1.0 keeps it "
        "constant: with epsilon_start=1 that is the random-tying baseline)"))
    epsilon_min: Number = Field(0.01, ge=0, le=1, description=(
        "floor of epsilon (paper: 0.01)"))
    gamma: Number | None = Field(None, ge=0, le=1, description=(
        "discount of the TD target r + gamma max Q(s') (preset paper: 0.99; honest: 0, i.e. "
        "Q(s, a) estimates the action's own reward). With all-negative rewards and one TD "
        "update per action, gamma 0.99 drives Q towards r / (1 - gamma) and the bootstrap "
        "then ranks actions by the next state's encoding, not by their reward"))
    hidden: Int = Field(128, ge=1, description=(
        "hidden width of the Q-network MLP L -> hidden -> L(L+1)/2 (paper: 128)"))
    q_lr: Number = Field(1e-3, gt=0, description=(
        "Adam learning rate of the Q-network. 1e-3 (Adam's default): the agent makes one TD "
        "update per action, i.e. only steps/steps_per_action updates in a whole run (2,500 "
        "for 10k steps), so the small rates of replay-based DQN (1e-4 to 2.5e-4 over "
        "millions of updates) would leave Q near its initialisation; Adam bounds each step "
        "by ~lr, so 1e-3 stays stable with rewards in [-10, 10]"))
    reward: Reward | None = Field(None, description=(
        "paper: r = clip(-perplexity, -clip, clip) (constant -clip, i.e. no signal, while "
        "perplexity > clip); neg-log-ppl: r = clip(-loss, -clip, clip) = -log perplexity, "
        "which ranks actions the same way (log is monotone) and still discriminates at "
        "perplexity 1e3 or 1e4 (preset paper: paper; honest: neg-log-ppl)"))
    reward_clip: Number = Field(10.0, gt=0, description=(
        "rewards are clipped to [-reward_clip, reward_clip] (paper: 10)"))
    reward_source: Literal["train", "valid"] | None = Field(None, description=(
        "the batch the reward's loss is measured on: train (the next training batch, as the "
        "paper: its batch-to-batch noise is far larger than one action's effect) | valid "
        "(the same fixed reward_batches validation batches every time: the noise of the "
        "batch choice cancels between actions). Preset paper: train; honest: valid"))
    reward_batches: Int = Field(4, ge=1, description=(
        "reward_source valid: how many fixed validation micro-batches (the first ones of "
        "the split) the reward averages over"))
    reward_baseline: Literal["none", "ema"] | None = Field(None, description=(
        "none (the paper) | ema: the TD update uses the centred reward r - b, b an "
        "exponential moving average of earlier rewards (the training trend and the reward's "
        "offset leave Q; what is left is the action's effect). Preset paper: none; honest: "
        "ema"))
    baseline_decay: Number = Field(0.9, ge=0, le=1, description=(
        "reward_baseline ema: b <- decay * b + (1 - decay) * r after each action (b starts "
        "at the first reward)"))
    state_encoding: Literal["raw", "distance", "one-hot"] | None = Field(None, description=(
        "how the Q-network reads the state s (s_i = the layer layer i uses): raw (s / L, "
        "the paper's layer ids; 'independent' is the largest-norm state) | distance ((i - "
        "s_i) / L: 0 = independent) | one-hot (L x L indicator of s_i). Preset paper: raw; "
        "honest: distance"))
    tie: Literal["shared", "frozen-copy"] = Field("shared", description=(
        "shared: a tied layer uses its source's tensor and its gradient adds to the "
        "source's (ALBERT's semantics) | frozen-copy: a tied layer reads its source's live "
        "weights but sends them no gradient (the official code's semantics, without its "
        "aliasing bug: untying here is always a real copy)"))
    start: Literal["dense", "official"] = Field("dense", description=(
        "dense: every layer independent at step 0 | official: the official code's initial "
        "state s = [0, ..., 0], every layer tied to layer 0"))
    shuffle_rewards: Bool = Field(False, description=(
        "control: the rewards of each episode's actions are permuted among them before the "
        "TD updates (made at the episode's end), so any agent that still 'learns' learns "
        "noise"))
    target_network: Bool = Field(False, description=(
        "bootstrap max Q(s') from a lagged copy of the Q-network (Mnih et al., 2015) "
        "instead of the network being trained; the paper has none"))
    target_sync: Int = Field(50, ge=1, description=(
        "with target_network: copy the Q-network into the target every this many TD updates"))
    seed: Int = Field(0, description=(
        "seed of the agent (Q-network initialisation, exploration); the agent has its own "
        "generators and never touches the global torch RNG stream of training"))

    @model_validator(mode="after")
    def _preset(self):
        """The preset fills the keys left unset (None); a key set explicitly wins."""
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        return self
