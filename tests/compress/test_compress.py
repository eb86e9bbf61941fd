"""compress(): Gram hooks, budgets, sequential calibration, save/load round trip."""

import copy

import pytest
import tiny_models as T
import torch

import layershare
from layershare.compress import compress
from layershare.compress.budget import matrix_params, spectrum_ranks, uniform_rank
from layershare.compress.calibrate import GramCollector
from layershare.compress.whiten import TARGET_RIDGE
from layershare.errors import LayershareError


def _perturbed(model):
    with torch.no_grad():  # biases and norms too: fresh models have zeros and ones there
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _calib(batches=3, batch=2, length=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(3, T.VOCAB, (batch, length), generator=g)}
            for _ in range(batches)]


def test_gram_hooks_see_every_matrix_once_per_token():
    model = _perturbed(T.llama())
    layer = model.model.layers[1]
    names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    modules = [layer.get_submodule(n) for n in names]
    seen = {n: [] for n in names}
    hooks = [m.register_forward_pre_hook(
                 lambda mod, a, n=n: seen[n].append(a[0].reshape(-1, a[0].shape[-1])))
             for n, m in zip(names, modules)]
    calib = _calib()
    with GramCollector(modules) as grams, torch.no_grad():
        for batch in calib:
            model(**batch)
    for h in hooks:
        h.remove()
    tokens = sum(b["input_ids"].numel() for b in calib)
    for n, m in zip(names, modules):
        X = torch.cat(seen[n]).double()
        assert grams.tokens(m) == tokens == len(X)
        torch.testing.assert_close(grams.gram(m), X.T @ X, rtol=1e-5, atol=1e-5)  # fp32 chunks
    # q, k, v read one tensor: one Gram matrix, not three
    assert grams.gram(modules[0]) is grams.gram(modules[1]) is grams.gram(modules[2])
    assert grams.gram(modules[4]) is grams.gram(modules[5])
    assert not layer._forward_pre_hooks and not modules[0]._forward_pre_hooks


@pytest.mark.parametrize("method, group_size, keep", [
    ("residual", 2, 0.8), ("residual", 4, 0.5), ("lowrank", 1, 0.5), ("lowrank", 2, 0.3),
    ("tied", None, 0.5)])
def test_keep_meets_its_budget_and_matches_the_count(method, group_size, keep):
    model = _perturbed(T.llama())
    result = compress(model, _calib(), method=method, keep=keep, progress=False,
                      **({"group_size": group_size} if group_size else {}))
    assert result.keep <= keep
    unique, dense = matrix_params(model)
    assert result.keep == unique / dense
    c = layershare.count(model)
    if method != "tied":  # counted independently: shared + low-rank + diagonal tensors
        assert c.shared + c.lowrank + c.diagonal == unique
    else:
        assert unique == 2 * sum(m.weight.numel() for m in model.model.layers[0].modules()
                                 if isinstance(m, torch.nn.Linear))
    if method != "tied":  # uniform ranks: each matrix type leaves less than one rank unspent
        slack = sum((m.out_features + m.in_features) * 4 for m in model.model.layers[0].modules()
                    if hasattr(m, "rank")) / dense
        assert keep - result.keep < slack


def test_uniform_rank_closed_form_and_too_small_budget():
    # residual: G m n + L r (m + n) + L k <= F L m n
    m, n, L, G = 64, 32, 6, 3
    r = uniform_rank("residual", 0.8, m, n, L, G, True)
    assert G * m * n + L * r * (m + n) + L * 32 <= 0.8 * L * m * n
    assert G * m * n + L * (r + 1) * (m + n) + L * 32 > 0.8 * L * m * n
    r = uniform_rank("lowrank", 0.5, m, n, L, G, False)
    assert r * (G * m + L * n) <= 0.5 * L * m * n < (r + 1) * (G * m + L * n)
    with pytest.raises(LayershareError, match="too small for residual"):
        uniform_rank("residual", 0.5, m, n, L, G, True)


def test_spectrum_allocation_spends_the_budget_where_it_removes_most():
    units = [{"spectrum": [8.0, 1.0, 1.0], "cost": 1, "cap": 3},
             {"spectrum": [5.0, 5.0, 0.0], "cost": 1, "cap": 3}]
    # normalised scores: unit 0: .8 .1 .1, unit 1: .5 .5 0
    assert spectrum_ranks(units, budget=3) == [1, 2]
    assert spectrum_ranks(units, budget=10) == [3, 3]
    assert spectrum_ranks([{"spectrum": [1.0, 1.0], "cost": 3, "cap": 2}], budget=5) == [1]


def _best_rank(Y, X, rank):
    """argmin over rank-``rank`` M of ||Y - M X^T||_F, computed without the module's code:
    with P the projector on the row space of X^T, ||Y - Z||^2 = ||Y (I - P)||^2 + ||Y P - Z||^2
    for every Z = M X^T, so Z is Y P truncated by SVD (Eckart-Young) and M = Z (X^T)^+."""
    Xt = X.T
    P = torch.linalg.pinv(Xt) @ Xt
    u, s, vt = torch.linalg.svd(Y @ P, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank] @ torch.linalg.pinv(Xt)


@pytest.mark.parametrize("sequential", [True, False])
def test_sequential_calibration_feeds_each_layer_the_compressed_outputs(sequential):
    dense = _perturbed(T.llama())
    model = copy.deepcopy(dense)
    calib = _calib()
    compress(model, calib, method="lowrank", group_size=1, rank=3, sequential=sequential,
             target="local", progress=False)
    # layer 2's q_proj inputs, in the compressed model and in the dense one
    inputs = {"compressed": _inputs(model, model.model.layers[2].self_attn.q_proj, calib),
              "dense": _inputs(dense, dense.model.layers[2].self_attn.q_proj, calib)}
    W = dense.model.layers[2].self_attn.q_proj.weight.detach().double()
    fitted = model.model.layers[2].self_attn.q_proj.merged_weight().detach().double()
    expected = {k: _best_rank(W @ X.T, X, 3) for k, X in inputs.items()}
    right, wrong = ("compressed", "dense") if sequential else ("dense", "compressed")
    torch.testing.assert_close(fitted, expected[right], atol=1e-4, rtol=1e-4)
    assert (fitted - expected[wrong]).abs().max() > 1e-3


def _inputs(model, module, calib):
    seen = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].reshape(
        -1, args[0].shape[-1]).double()))
    with torch.no_grad():
        for batch in calib:
            model(**batch)
    handle.remove()
    return torch.cat(seen)


def test_original_target_fits_each_layer_to_the_original_outputs():
    """target="original": each compressed layer, fed the compressed model's inputs X_c, is
    fitted to the dense layer's outputs on the original inputs X. The target is the ridge
    solution W* = argmin ||W X^T - M X_c^T||^2 + lam ||M - W||^2 = (W C + lam W)(G + lam I)^-1
    (C = X^T X_c, G = X_c^T X_c, lam = TARGET_RIDGE mean(diag G)), the fit its rank-3 best
    on X_c -- not the local fit of W itself on X_c."""
    dense = _perturbed(T.llama())
    model = copy.deepcopy(dense)
    calib = _calib()
    compress(model, calib, method="lowrank", group_size=1, rank=3, target="original",
             progress=False)
    X = _inputs(dense, dense.model.layers[2].self_attn.q_proj, calib)        # original inputs
    X_c = _inputs(model, model.model.layers[2].self_attn.q_proj, calib)      # compressed ones
    W = dense.model.layers[2].self_attn.q_proj.weight.detach().double()
    fitted = model.model.layers[2].self_attn.q_proj.merged_weight().detach().double()
    C, G = X.T @ X_c, X_c.T @ X_c
    lam = TARGET_RIDGE * G.diagonal().mean()
    eye = torch.eye(len(G), dtype=G.dtype)
    target = (W @ C + lam * W) @ torch.linalg.inv(G + lam * eye)
    torch.testing.assert_close(fitted, _best_rank(target @ X_c.T, X_c, 3), atol=1e-4, rtol=1e-4)
    assert (fitted - _best_rank(W @ X_c.T, X_c, 3)).abs().max() > 1e-3


@pytest.mark.parametrize("method, options", [
    ("residual", dict(group_size=2, keep=0.7)), ("lowrank", dict(group_size=2, keep=0.5)),
    ("residual", dict(group_size=2, rank=3, strategy="cycle", init="stepwise"))])
def test_compress_save_load_gives_identical_outputs(tmp_path, method, options):
    model = _perturbed(T.llama())
    compress(model, _calib(), method=method, progress=False, **options)
    layershare.save(model, tmp_path / "ck")
    loaded = layershare.load(tmp_path / "ck")
    ids = T.inputs("llama")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-6, rtol=1e-6)
    assert layershare.count(loaded) == layershare.count(model)


def test_calibrated_beats_data_free_on_the_calibration_data():
    dense = _perturbed(T.llama())
    calib = _calib(batches=4)
    ids = torch.cat([b["input_ids"] for b in calib])
    with torch.no_grad():
        ref = torch.log_softmax(dense(ids).logits, -1)

    def kl(model):
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits, -1)
        return float((ref.exp() * (ref - logp)).sum(-1).mean())

    scores = {}
    for name, data in (("calibrated", calib), ("data-free", None)):
        model = copy.deepcopy(dense)
        compress(model, data, method="lowrank", group_size=1, keep=0.4, progress=False)
        scores[name] = kl(model)
    assert scores["calibrated"] < scores["data-free"]


def test_full_rank_compress_reproduces_the_model():
    dense = _perturbed(T.gpt2())  # GPT-2: fused c_attn, transposed Conv1D weights
    model = copy.deepcopy(dense)
    compress(model, _calib(), method="residual", group_size=2, rank=10_000, progress=False)
    ids = T.inputs("gpt2")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, dense(ids).logits, atol=1e-4, rtol=1e-4)


def test_bad_options_are_one_clear_error():
    model = T.llama()
    with pytest.raises(LayershareError, match="exactly one of keep"):
        compress(model, _calib(), method="residual")
    with pytest.raises(LayershareError, match="between 0 and 1"):
        compress(model, _calib(), method="residual", keep=1.0)
    with pytest.raises(LayershareError, match="no calibration batches"):
        compress(model, [], method="residual", keep=0.8)


@pytest.mark.parametrize("method, group_size", [("lowrank", 1), ("lowrank", 2), ("residual", 2)])
def test_spectrum_allocation_meets_the_budget_and_varies_ranks(method, group_size):
    model = _perturbed(T.llama())
    result = compress(model, _calib(), method=method, group_size=group_size, keep=0.6,
                      allocate="spectrum", progress=False)
    assert result.keep <= 0.6
    ranks = model.layershare_config.ranks["model.layers"]
    assert len({r for per_layer in ranks.values() for r in per_layer}) > 1  # not uniform
    if method == "lowrank":
        assert min(r for per_layer in ranks.values() for r in per_layer) >= 1
    assert 0.6 - result.keep < 0.05


def test_compress_restores_the_training_mode():
    model = T.llama().train()
    compress(model, _calib(), method="lowrank", group_size=1, keep=0.5, allocate="spectrum",
             progress=False)
    assert model.training


@pytest.mark.parametrize("method", ["residual", "tied"])
def test_lazy_loading_compresses_to_the_same_model(tmp_path, method):
    from layershare.formats.lazy import LazyModel

    dense = _perturbed(T.llama())
    dense.save_pretrained(tmp_path / "src")
    calib = _calib()
    options = dict(method=method, keep=0.7 if method == "residual" else 0.5, progress=False)
    eager = copy.deepcopy(dense)
    compress(eager, calib, **options)
    lazy = LazyModel(tmp_path / "src")
    assert any(p.is_meta for p in lazy.model.parameters())  # the layers are not read yet
    compress(lazy.model, calib, materialize=lazy.materialize, **options)
    model = lazy.finish()
    ids = T.inputs("llama")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, eager(ids).logits, atol=1e-5, rtol=1e-5)


def test_lazy_loading_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    from safetensors.torch import load_file, save_file

    from layershare.formats.lazy import LazyModel

    T.llama().save_pretrained(tmp_path / "src")
    state = load_file(tmp_path / "src" / "model.safetensors")
    state["model.layers.9.extra.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "src" / "model.safetensors")
    lazy = LazyModel(tmp_path / "src")
    compress(lazy.model, None, method="tied", keep=0.5, materialize=lazy.materialize,
             progress=False)
    with pytest.raises(LayershareError, match="does not use"):
        lazy.finish()


def test_residual_fit_of_compress_is_its_whitened_optimum():
    """compress(method="residual") against an independent computation of the optimum, per
    matrix, in float64 (eigendecomposition, not the module's own functions): with G = X^T X
    of the matrix's calibration inputs, S the group mean, the low-rank term is the rank-r
    minimiser of ||(W - S - B A) X^T||_F -- (W - S) G^(1/2) truncated, times G^(-1/2) -- and
    the diagonal the closed form d_i = (R G)_ii / G_ii of what remains, R = W - S - B A."""
    dense = _perturbed(T.llama())
    calib = _calib(batches=4)
    name = "self_attn.o_proj"
    grams = []
    for layer in dense.model.layers[:2]:  # the first group (K=2): its inputs from the original
        xs = []
        hook = layer.get_submodule(name).register_forward_pre_hook(
            lambda mod, a: xs.append(a[0].reshape(-1, a[0].shape[-1]).double()))
        with torch.no_grad():
            for batch in calib:
                dense(**batch)
        hook.remove()
        x = torch.cat(xs)
        grams.append(x.T @ x)
    weights = [layer.get_submodule(name).weight.detach().double()
               for layer in dense.model.layers[:2]]
    model = copy.deepcopy(dense)
    rank = 3
    compress(model, calib, method="residual", group_size=2, rank=rank, sequential=False,
             progress=False)
    shared = sum(weights) / 2
    for l, (w, g) in enumerate(zip(weights, grams)):
        module = model.model.layers[l].get_submodule(name)
        torch.testing.assert_close(module.shared.detach().double(), shared, rtol=0, atol=1e-5)
        evals, evecs = torch.linalg.eigh(g)
        evals = evals.clamp_min(evals.max() * 1e-12)
        root, inv_root = (evecs * evals.sqrt()) @ evecs.T, (evecs / evals.sqrt()) @ evecs.T
        u, s, vt = torch.linalg.svd((w - shared) @ root)
        best = (u[:, :rank] * s[:rank]) @ vt[:rank] @ inv_root
        got = (module.lora_B.double() @ module.lora_A.double()).detach()
        error = lambda m: float(torch.trace(m @ g @ m.T))  # noqa: E731  ||m X^T||_F^2
        optimum = error(w - shared - best)
        assert error(w - shared - got) <= optimum * (1 + 1e-4) + 1e-9, l
        rest = w - shared - got
        d = torch.diagonal(rest @ g) / torch.diagonal(g)
        torch.testing.assert_close(module.diag.detach().double(), d, rtol=1e-3, atol=1e-5)
        u0, s0, v0 = torch.linalg.svd(w - shared)  # the unwhitened fit is measurably worse:
        plain = (u0[:, :rank] * s0[:rank]) @ v0[:rank]  # the test can tell them apart
        assert error(w - shared - plain) > optimum * 1.01, l
