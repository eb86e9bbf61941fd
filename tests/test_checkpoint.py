"""save / load: each tensor once on disk, identical outputs, clear errors, atomic writes."""

import json
import shutil

import pytest
import tiny_models as T
import torch

import layershare
from layershare import LayershareError

CASES = [("gpt2", "residual"), ("llama", "lowrank"), ("bert", "tied"), ("whisper", "residual"),
         ("llama", "residual")]


def _out(model, name):
    with torch.no_grad():
        return T.output(model.eval(), T.inputs(name))


@pytest.mark.parametrize("name, method", CASES)
def test_save_load_roundtrip_is_identical_and_small(tmp_path, name, method):
    model = layershare.convert(T.BUILDERS[name](), method=method, group_size=2, rank=4,
                               strategy="cycle-rev")
    with torch.no_grad():  # train a little so nothing is at its initial value
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    layershare.save(model, tmp_path / "ck")
    loaded = layershare.load(tmp_path / "ck")
    assert type(loaded) is type(model)
    assert torch.equal(_out(loaded, name), _out(model, name))
    before, after = layershare.count(model), layershare.count(loaded)
    assert after == before
    structure = layershare.load_structure(tmp_path / "ck")  # header only, on the meta device
    assert layershare.count(structure) == before
    assert {p.device.type for p in structure.parameters()} == {"meta"}
    weights = (tmp_path / "ck" / "model.safetensors").stat().st_size
    # ~4 bytes per unique fp32 parameter (plus a small header; whisper also stores buffers)
    assert 4 * before.unique_params <= weights <= 4 * before.unique_params * 1.1 + 20_000


def test_torch_module_loads_into_a_given_skeleton(tmp_path):
    model = layershare.convert(T.torch_encoder(), method="residual", rank=4)
    layershare.save(model, tmp_path / "ck")
    with pytest.raises(LayershareError, match="cannot be rebuilt"):
        layershare.load(tmp_path / "ck")
    loaded = layershare.load(tmp_path / "ck", model=T.torch_encoder())
    assert torch.equal(_out(loaded, "torch_encoder"), _out(model, "torch_encoder"))
    with torch.device("meta"):
        skeleton = T.torch_encoder()
    structure = layershare.load_structure(tmp_path / "ck", model=skeleton)
    assert layershare.count(structure) == layershare.count(model)


def test_load_structure_reads_no_weights(tmp_path, monkeypatch):
    import layershare.checkpoint as ck

    model = layershare.convert(T.llama(), method="residual", rank=2)
    layershare.save(model, tmp_path / "ck")
    real_open = ck.safe_open

    class HeaderOnly:  # safe_open whose tensor-reading calls fail
        def __init__(self, *args, **kwargs):
            self.f = real_open(*args, **kwargs)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def keys(self):
            return self.f.keys()

        def get_slice(self, name):
            inner = self.f.get_slice(name)
            return type("Slice", (), {"get_shape": lambda _self: inner.get_shape()})()

        def __getattr__(self, name):
            raise AssertionError(f"weights were read ({name})")

    def boom(*args, **kwargs):
        raise AssertionError("weights were read")

    monkeypatch.setattr(ck, "safe_open", HeaderOnly)
    monkeypatch.setattr(ck, "load_file", boom)
    assert layershare.count(layershare.load_structure(tmp_path / "ck")) == layershare.count(model)


@pytest.mark.parametrize("damage, message", [
    ("truncate", "corrupted or truncated"),
    ("garbage", "corrupted or truncated"),
    ("no-meta", "not a layershare checkpoint"),
    ("bad-meta", "corrupted"),
    ("no-weights", "missing"),
])
@pytest.mark.parametrize("loader", [layershare.load, layershare.load_structure])
def test_damaged_checkpoints_give_clear_errors(tmp_path, damage, message, loader):
    ck = tmp_path / "ck"
    layershare.save(layershare.convert(T.gpt2(), method="residual", rank=2), ck)
    weights, meta = ck / "model.safetensors", ck / "layershare.json"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * 64)
    elif damage == "no-meta":
        meta.unlink()
    elif damage == "bad-meta":
        meta.write_text("{not json")
    else:
        weights.unlink()
    with pytest.raises(LayershareError, match=message):
        loader(ck)


@pytest.mark.parametrize("loader", [layershare.load, layershare.load_structure])
def test_checkpoint_of_another_plan_does_not_load_silently(tmp_path, loader):
    ck = tmp_path / "ck"
    layershare.save(layershare.convert(T.gpt2(), method="residual", rank=2), ck)
    meta = json.loads((ck / "layershare.json").read_text())
    meta["config"]["rank"] = 3
    (ck / "layershare.json").write_text(json.dumps(meta))
    with pytest.raises(LayershareError, match="shape"):
        loader(ck)
    meta["config"]["group_size"] = 1
    (ck / "layershare.json").write_text(json.dumps(meta))
    with pytest.raises(LayershareError, match="does not match"):
        loader(ck)


def _dense_shapes(model):
    from layershare.residual import ResidualLinear
    return {(m.out_features, m.in_features) for m in model.modules()
            if isinstance(m, ResidualLinear)}


def _tensors_held(model):
    """Every tensor reachable from a module's attributes (parameters, buffers, plain
    attributes, tuples/lists/dicts of them) -- not only its parameters."""
    found = []

    def walk(value, depth=0):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)) and depth < 3:
            for v in value:
                walk(v, depth + 1)
        elif isinstance(value, dict) and depth < 3:
            for v in value.values():
                walk(v, depth + 1)

    for module in model.modules():
        for key, value in vars(module).items():
            if key not in ("_modules",):
                walk(value)
    return found


@pytest.mark.parametrize("cache", [False, True])
def test_loaded_model_generates_without_keeping_dense_weights(tmp_path, cache):
    model = layershare.convert(T.gpt2(), method="residual", group_size=2, rank=2)
    layershare.save(model, tmp_path / "c")
    loaded = layershare.load(tmp_path / "c", cache_merged=cache)
    assert {m.training for m in loaded.modules()} == {False}
    ids = T.inputs("gpt2", batch=1, length=40)["input_ids"]  # prefill: the merged path
    with torch.no_grad():
        loaded.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    shapes = _dense_shapes(loaded)
    params = {id(p) for p in loaded.parameters()}  # S itself is dense-shaped: held once per group
    held = [t for t in _tensors_held(loaded) if tuple(t.shape) in shapes and id(t) not in params]
    if cache:  # the opt-in cache: one merged weight per converted matrix, as before
        assert len(held) == sum(1 for m in loaded.modules() if hasattr(m, "cache_merged"))
    else:
        assert held == []


def test_load_builds_no_dense_weights_and_keeps_sharing(tmp_path):
    model = layershare.convert(T.llama(), method="residual", group_size=2, rank=2)
    layershare.save(model, tmp_path / "c")
    loaded = layershare.load(tmp_path / "c")
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    layers = loaded.model.layers
    assert layers[0].mlp.up_proj.shared is layers[1].mlp.up_proj.shared
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight  # tied embeddings
    ids = T.inputs("llama")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model.eval()(ids).logits)
    rotary = loaded.model.rotary_emb.inv_freq  # a non-persistent buffer: computed, not stored
    torch.testing.assert_close(rotary, model.model.rotary_emb.inv_freq)


def test_save_in_bf16_halves_the_file_and_loads_in_bf16(tmp_path):
    import layershare
    from layershare.errors import LayershareError

    model = layershare.convert(T.gpt2(), method="residual", group_size=2, rank=2)
    layershare.save(model, tmp_path / "fp32")
    layershare.save(model, tmp_path / "bf16", dtype="bf16")
    a = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    b = (tmp_path / "bf16" / "model.safetensors").stat().st_size
    assert 0.45 * a < b < 0.55 * a
    loaded = layershare.load(tmp_path / "bf16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert next(model.parameters()).dtype == torch.float32  # the saved model is unchanged
    for name, p in loaded.state_dict().items():
        torch.testing.assert_close(p.float(), model.state_dict()[name].bfloat16().float())
    with pytest.raises(LayershareError, match="unknown dtype"):
        layershare.save(model, tmp_path / "x", dtype="int3")


@pytest.mark.parametrize("method", ["residual", "lowrank"])
def test_checkpoints_of_format_1_still_load(tmp_path, method):
    """Format 1 named the factors lora_a / lora_b (residual) and basis / coeff (lowrank):
    rewrite a format-2 checkpoint in the old names and load it back, same outputs."""
    import json

    from safetensors.torch import load_file, save_file

    model = T.perturb(layershare.convert(T.llama(), method=method, group_size=2, rank=3))
    new = tmp_path / "new"
    layershare.save(model, new)
    old = tmp_path / "old"
    shutil.copytree(new, old)
    back = {"lora_B": "lora_a", "lora_A": "lora_b"} if method == "residual" else \
        {"lora_B": "basis", "lora_A": "coeff"}
    tensors = load_file(new / "model.safetensors")
    renamed = {}
    for name, t in tensors.items():
        head, _, last = name.rpartition(".")
        renamed[f"{head}.{back[last]}" if last in back else name] = t
    assert renamed.keys() != tensors.keys()
    save_file(renamed, old / "model.safetensors", metadata={"format": "pt"})
    meta = json.loads((old / "layershare.json").read_text())
    meta["format"] = 1
    (old / "layershare.json").write_text(json.dumps(meta))
    x = T.inputs("llama")
    expected = T.output(layershare.load(new), x)
    torch.testing.assert_close(T.output(layershare.load(old), x), expected)
    assert layershare.count(layershare.load_structure(old)) == layershare.count(model)
