"""Batched merges (layershare.bank): same outputs and gradients as the per-layer merge."""

import copy
import gc
import warnings

import pytest
import torch
from tiny_models import VOCAB, gpt2, torch_encoder

import layershare
from layershare import bank
from layershare.residual import ResidualLinear


def _residual(strategy="sequence", group_size=2, **kw):
    model = layershare.convert(gpt2(), "residual", group_size=group_size, rank=4,
                               strategy=strategy, init="mean", diag=True, **kw)
    with torch.no_grad():  # B = 0 after a scratch init would hide a wrong A gradient
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _grads(model, x):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same dropout masks in both runs
    out = model(input_ids=x, labels=x)
    out.loss.backward()
    names = {}
    for name, p in model.named_parameters():  # each shared tensor once
        names.setdefault(id(p), (name, p))
    return out.logits.detach(), {n: p.grad.clone() for n, p in names.values()}


@pytest.mark.parametrize("strategy,group_size", [("sequence", 2), ("cycle", 2),
                                                 ("sequence", 3), ("sequence", 4)])
def test_batched_equals_per_layer_outputs_and_gradients(strategy, group_size):
    """S, A, B, d (and biases) get the per-layer path's gradients to fp32 round-off, for
    equal groups (bmm + broadcast S), cycled groups, unequal groups (4 layers in 3 + 1) and
    one group (baddbmm with S broadcast)."""
    model = _residual(strategy, group_size)
    x = torch.randint(VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    assert bank.is_batched(model)
    calls = []
    orig = bank.Bank.weights
    bank.Bank.weights = lambda self: calls.append(1) or orig(self)
    try:
        logits_b, grads_b = _grads(model, x)
    finally:
        bank.Bank.weights = orig
    assert len(calls) == 4  # one batched merge per matrix type of GPT-2's stack
    bank.set_batched(model, False)
    logits_p, grads_p = _grads(model, x)
    torch.testing.assert_close(logits_b, logits_p, rtol=1e-5, atol=1e-5)
    assert grads_b.keys() == grads_p.keys()
    kinds = {"shared", "lora_B", "lora_A", "diag"}
    assert kinds <= {n.rsplit(".", 1)[-1] for n in grads_b}
    for name in grads_b:
        torch.testing.assert_close(grads_b[name], grads_p[name], rtol=1e-5, atol=1e-5,
                                   msg=name)


def test_shared_gradient_is_the_sum_over_its_layers_when_batched():
    """dL/dS = dL/dW_0 + dL/dW_1 for a group of two layers, and dL/dd_l is the diagonal of
    dL/dW_l. dL/dW_l is read off the merged dense model (same weights W_l, same dropout
    masks), whose layers hold separate weights."""
    model = _residual("sequence", 2)
    assert bank.is_batched(model)
    x = torch.randint(VOCAB, (2, 8), generator=torch.Generator().manual_seed(1))
    dense = layershare.merge(model, inplace=False)  # GPT-2 Conv1D weights (in x out) = W_l^T
    _, grads = _grads(model, x)
    _grads(dense, x)
    for group in ((0, 1), (2, 3)):
        for kind in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            layers = [model.transformer.h[l].get_submodule(kind) for l in group]
            assert layers[0].shared is layers[1].shared
            per_layer = [dense.transformer.h[l].get_submodule(kind).weight.grad.T for l in group]
            assert all(g.abs().sum() > 0 for g in per_layer)
            torch.testing.assert_close(layers[0].shared.grad, per_layer[0] + per_layer[1],
                                       rtol=1e-5, atol=1e-6, msg=f"{kind} of layers {group}")
            for layer, g in zip(layers, per_layer):
                torch.testing.assert_close(layer.diag.grad, torch.diagonal(g), rtol=1e-5,
                                           atol=1e-6, msg=f"{kind}.diag of layers {group}")


def test_grad_accumulation_and_repeated_forwards():
    """Two micro-batches, each with its own backward, accumulate as per layer."""
    model = _residual()
    g = torch.Generator().manual_seed(2)
    xs = [torch.randint(VOCAB, (2, 8), generator=g) for _ in range(2)]

    def run():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        for x in xs:
            model(input_ids=x, labels=x).loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    model.train()
    batched = run()
    bank.set_batched(model, False)
    plain = run()
    for a, b in zip(batched, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_state_dict_save_load_merge_count_unchanged(tmp_path):
    model = _residual()
    keys = list(model.state_dict())
    plain = copy.deepcopy(model)
    bank.detach(plain)
    assert keys == list(plain.state_dict())
    assert layershare.count(model).unique_params == layershare.count(plain).unique_params
    x = torch.randint(VOCAB, (1, 8))
    model.train()
    model(input_ids=x, labels=x).loss.backward()  # a batched step leaves nothing behind
    layershare.save(model, tmp_path / "ck")
    loaded = layershare.load(tmp_path / "ck")
    assert bank.is_batched(loaded)  # load converts, convert attaches
    assert list(loaded.state_dict()) == keys
    dense = layershare.merge(loaded, inplace=False)
    assert not hasattr(dense, bank.ATTR)
    assert not dense._forward_pre_hooks
    with torch.no_grad():
        torch.testing.assert_close(dense(input_ids=x).logits, loaded(input_ids=x).logits,
                                   rtol=1e-4, atol=1e-4)


def _dense_shaped(shapes, exclude):
    """Live tensors whose last two dims are one of `shapes`; tensors left by other tests
    (e.g. the ONNX exporter's fake tensors, whose shapes are symbolic) are skipped."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on torch's deprecated module aliases
        return [o for o in gc.get_objects() if isinstance(o, torch.Tensor)
                and id(o) not in exclude and o.dim() >= 2
                and all(type(s) is int for s in o.shape) and tuple(o.shape[-2:]) in shapes]


def test_eval_holds_no_dense_shaped_tensor():
    model = _residual()
    modules = [m for m in model.modules() if isinstance(m, ResidualLinear)]
    dense_shapes = {tuple(m.shared.shape) for m in modules}
    before = {id(t) for t in _dense_shaped(dense_shapes, set())}
    x = torch.randint(VOCAB, (1, 8))
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    model.eval()
    with torch.no_grad():
        model(input_ids=x[:, :1])  # one token: the factored path
    assert all(m._banked is None and m._cache is None for m in modules)
    # the compact tensors and their gradients (S's is dense-shaped: it is a gradient)
    own = {id(t) for p in model.parameters() for t in (p, p.grad) if t is not None}
    held = _dense_shaped(dense_shapes, own | before)
    assert not held, [tuple(t.shape) for t in held]


def test_no_grad_training_mode_hands_out_nothing():
    model = _residual().train()
    seen = []
    orig = bank.Bank.weights
    bank.Bank.weights = lambda self: seen.append(1) or orig(self)
    try:
        with torch.no_grad():
            model(input_ids=torch.randint(VOCAB, (1, 4)))
    finally:
        bank.Bank.weights = orig
    assert not seen


def test_fused_attention_projection_is_banked():
    """nn.TransformerEncoder: in_proj read through the layer's pre-hook gets the bank's
    weight (no second merge) and the gradients equal the per-layer path's."""
    model = layershare.convert(torch_encoder(), "residual", group_size=2, rank=4,
                               init="mean", diag=True)
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(3))

    def grads():
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        model(x).square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    batched = grads()
    bank.set_batched(model, False)
    plain = grads()
    for a, b in zip(batched, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_compiled_training_uses_the_bank_and_equals_eager(monkeypatch):
    """Under torch.compile the root hooks are traced: the per-layer merge is never called
    (it would raise here) and the gradients equal the eager per-layer path's."""
    model = _residual()
    model.config.use_cache = False
    x = torch.randint(VOCAB, (2, 8), generator=torch.Generator().manual_seed(4))
    bank.set_batched(model, False)
    _, plain = _grads(model, x)
    bank.set_batched(model, True)

    def no_merge(self):
        raise AssertionError("per-layer merge called in a batched training step")

    monkeypatch.setattr(ResidualLinear, "merged_weight", no_merge)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    compiled(input_ids=x, labels=x).loss.backward()
    for name, p in model.named_parameters():
        if name in plain:
            torch.testing.assert_close(p.grad, plain[name], rtol=1e-5, atol=1e-5, msg=name)
    torch._dynamo.reset()
