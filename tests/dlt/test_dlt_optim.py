"""The optimizer holds state only for unique parameters: tying frees, untying starts fresh."""

import gc
import weakref

import torch

from layershare.dlt import TiedStack, state_tensors, sync_optimizer


def adamw(model, lr=1e-2):
    """As the trainer builds it: decay on matrices, none on biases and norms (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=lr)


def step(model, opt, seed=0):
    ids = torch.randint(0, 48, (2, 12), generator=torch.Generator().manual_seed(seed))
    loss = model.loss(ids)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def in_optimizer(opt):
    return [p for g in opt.param_groups for p in g["params"]]


def test_tie_frees_state_and_untie_starts_fresh(lm):
    opt = adamw(lm)
    tied = TiedStack(lm)
    P = len(tied.holders[1])            # parameter tensors per layer
    n = len(in_optimizer(opt))
    step(lm, opt)
    assert state_tensors(opt) == 2 * n  # exp_avg and exp_avg_sq per parameter

    old = [tied.param(1, k) for k in range(P)]
    for p in old:
        p.grad = torch.zeros_like(p)    # e.g. a loop that zeroes grads to zero, not None
    refs = [weakref.ref(p) for p in old]
    report = sync_optimizer(opt, lm, tied.apply([0, 0, 2, 3]))
    assert (report.kept, report.added, report.dropped) == (n - P, 0, P)
    assert state_tensors(opt) == 2 * (n - P)
    assert all(p.grad is None for p in old)
    del old, p
    gc.collect()
    assert all(r() is None for r in refs)  # the tied layer's tensors are gone for good
    assert {id(p) for p in in_optimizer(opt)} == {id(p) for p in lm.parameters()}

    step(lm, opt)
    assert state_tensors(opt) == 2 * (n - P)
    report = sync_optimizer(opt, lm, tied.apply([0, 1, 2, 3]))
    assert (report.kept, report.added, report.dropped) == (n - P, P, 0)
    copies = [tied.param(1, k) for k in range(P)]
    assert all(p not in opt.state for p in copies)  # no state until the next step
    assert state_tensors(opt) == 2 * (n - P)
    step(lm, opt)
    assert state_tensors(opt) == 2 * n
    assert all(opt.state[p]["step"].item() == 1 for p in copies)
    assert opt.state[tied.param(0, 0)]["step"].item() == 3  # survived all along
    again = adamw(lm)
    again.load_state_dict(opt.state_dict())  # a checkpointable, consistent optimizer
    assert state_tensors(again) == 2 * n


def test_copies_join_their_sources_group(lm):
    opt = adamw(lm)
    tied = TiedStack(lm)
    sync_optimizer(opt, lm, tied.apply([0, 0, 2, 3]))
    sync_optimizer(opt, lm, tied.apply([0, 1, 2, 3]))
    decay, no_decay = (set(map(id, g["params"])) for g in opt.param_groups)
    for k in range(len(tied.holders[1])):
        p = tied.param(1, k)
        assert id(p) in (decay if p.dim() >= 2 else no_decay)


def test_group_of_callable_and_frozen_parameters(lm):
    lm.embed.requires_grad_(False)
    opt = adamw(lm)
    tied = TiedStack(lm)
    sync_optimizer(opt, lm, tied.apply([0, 0, 2, 3]))
    assert not any(p is q for p in in_optimizer(opt) for q in lm.embed.parameters())
    sync_optimizer(opt, lm, group_of=lambda name, p: None if "embed" in name else int(p.dim() < 2))
    assert [len(g["params"]) for g in opt.param_groups] == [
        sum(p.dim() >= 2 for p in lm.parameters() if p.requires_grad),
        sum(p.dim() < 2 for p in lm.parameters() if p.requires_grad)]


def test_synced_optimizer_steps_like_a_fresh_adamw_on_new_parameters(lm):
    opt = adamw(lm, lr=1e-2)
    tied = TiedStack(lm)
    step(lm, opt)
    sync_optimizer(opt, lm, tied.apply([0, 0, 2, 3]))
    step(lm, opt)
    sync_optimizer(opt, lm, tied.apply([0, 1, 2, 3]))
    w = tied.param(1, [n for n, _, _ in tied.holders[1]].index("attn.q_proj.weight"))
    lm.loss(torch.randint(0, 48, (2, 12))).backward()
    ref = w.detach().clone().requires_grad_(True)
    ref.grad = w.grad.clone()
    fresh = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.1)
    opt.step()
    fresh.step()
    assert torch.allclose(w, ref)


def test_training_still_learns_through_tie_and_untie(lm):
    opt = adamw(lm, lr=3e-3)
    tied = TiedStack(lm)
    first = step(lm, opt)
    for i, state in enumerate([[0, 0, 2, 3], [0, 0, 1, 1], [0, 1, 1, 3], [0, 1, 2, 3]] * 5):
        sync_optimizer(opt, lm, tied.apply(state))
        for _ in range(3):
            last = step(lm, opt)  # the same batch every time: the loss must fall
    assert last < first - 0.5
