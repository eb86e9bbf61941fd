"""``layershare export --format onnx``: ORT equals PyTorch, each shared tensor stored once,
int8 on top, bad input in one line (tests/onnx_helpers.py builds the exports once)."""

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx_helpers import INT8_TOLERANCE

from layershare.checkpoint import unique_state
from layershare.cli import main
from layershare.errors import LayershareError

TOL = 1e-4  # fp32: ORT against PyTorch, absolute, on logits / hidden states


def _session(directory):
    from layershare.formats.onnx import ort_session
    return ort_session(directory / "model.onnx")


def _feed(model, ids, past=None):
    batch, new = ids.shape
    start = 0 if past is None else past[0].shape[2]
    feed = {"input_ids": ids.numpy(), "attention_mask": np.ones((batch, start + new), np.int64),
            "position_ids": np.arange(start, start + new)[None].repeat(batch, 0)}
    if past is None:
        from layershare.formats.onnx_export import _kv_shapes
        past = [np.zeros((batch, h, 0, d), np.float32)
                for h, d in _kv_shapes(model, ids[:1, :2]) for _ in (0, 1)]
    feed.update({f"past_key_values.{i // 2}.{('key', 'value')[i % 2]}": p
                 for i, p in enumerate(past)})
    return feed


@pytest.mark.parametrize("name", ["llama-residual", "gpt2-lowrank"])
def test_causal_lm_logits_equal_torch_with_and_without_cache(onnx_exports, name):
    model, _, out, _ = onnx_exports(name)
    ids = torch.randint(3, 96, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(input_ids=ids, use_cache=False).logits.numpy()
    sess = _session(out)
    # no cache: the whole sequence in one call (an empty past)
    logits, *present = sess.run(None, _feed(model, ids))
    assert np.abs(logits - expected).max() < TOL
    # with the cache: 8 tokens, then the presents fed back for 4 more, one by one
    logits, *past = sess.run(None, _feed(model, ids[:, :8]))
    steps = [logits]
    for t in range(8, 12):
        logits, *past = sess.run(None, _feed(model, ids[:, t:t + 1], past))
        steps.append(logits)
    assert past[0].shape[2] == 12
    assert np.abs(np.concatenate(steps, axis=1) - expected).max() < TOL


def test_encoder_hidden_state_equals_torch(onnx_exports):
    model, _, out, _ = onnx_exports("bert-residual")
    ids = torch.randint(3, 96, (2, 9), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding must be masked the same way
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
            "token_type_ids": np.zeros_like(ids.numpy())}
    (hidden,) = _session(out).run(None, feed)
    assert np.abs(hidden - expected).max() < TOL


@pytest.mark.parametrize("name", ["llama-residual", "gpt2-lowrank", "bert-residual"])
def test_each_shared_tensor_is_one_initializer_and_size_within_5pct(onnx_exports, name):
    from layershare.formats.onnx_check import _shape_free_hash, read_initializers

    model, _, out, _ = onnx_exports(name)
    meta = json.loads((out / "onnx.json").read_text())
    fp32 = meta["fp32"]
    assert abs(fp32["initializer_bytes"] - fp32["unique_bytes"]) <= 0.05 * fp32["unique_bytes"]
    # count by hand: every tensor that several modules hold appears exactly once
    inits = [a for a in read_initializers(out / "model.onnx").values()]
    keys = [_shape_free_hash(a) for a in inits] + [_shape_free_hash(a.T) for a in inits
                                                   if a.ndim == 2]
    holders, params = {}, {}
    for n, p in model.named_parameters(remove_duplicate=False):
        holders.setdefault(id(p), []).append(n)
        params[id(p)] = p.detach()
    shared = [params[i] for i, names in holders.items() if len(names) > 1]
    assert shared, "the case must have shared tensors"
    for p in shared:
        assert keys.count(_shape_free_hash(p.numpy())) == 1


def test_a_duplicated_shared_tensor_is_detected(onnx_exports, tmp_path):
    import onnx
    from onnx import numpy_helper

    from layershare.formats.onnx_check import check_shared_once

    model, _, out, _ = onnx_exports("llama-residual")
    tensors = {k: v.numpy() for k, v in unique_state(model).items()}
    check_shared_once(out / "model.onnx", tensors)  # the export as written passes
    graph = onnx.load(str(out / "model.onnx"))
    shared = next(i for i in graph.graph.initializer if i.name.endswith("q_proj.shared"))
    for transpose in (False, True):
        g = onnx.ModelProto()
        g.CopyFrom(graph)
        array = numpy_helper.to_array(shared)
        copy = numpy_helper.from_array(array.T.copy() if transpose else array.copy(), "copy")
        g.graph.initializer.append(copy)
        user = next(n for n in g.graph.node if shared.name in n.input)
        user.input[list(user.input).index(shared.name)] = "copy"  # one reader gets a copy
        path = tmp_path / f"dup{transpose}.onnx"
        onnx.save_model(g, str(path))
        with pytest.raises(LayershareError, match=r"q_proj\.shared is stored 2 times"):
            check_shared_once(path, tensors)
        with pytest.raises(LayershareError, match="stored 2 times"):
            check_shared_once(path)  # the model-free check (int8) sees it too


def test_export_fails_loudly_and_writes_nothing_when_a_tensor_is_duplicated(
        onnx_exports, tmp_path, monkeypatch, capsys):
    """A duplicating exporter (simulated: a copy of a shared tensor added after export)."""
    import onnx
    from onnx import numpy_helper

    import layershare.formats.onnx_export as ox

    _, checkpoint, _, _ = onnx_exports("llama-residual")
    real = ox.export_graph

    def duplicating(model, path, opset):
        info = real(model, path, opset)
        g = onnx.load(str(path))
        shared = next(i for i in g.graph.initializer if i.name.endswith("k_proj.shared"))
        g.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(shared), "x"))
        user = next(n for n in g.graph.node if shared.name in n.input)
        user.input[list(user.input).index(shared.name)] = "x"
        onnx.save_model(g, str(path))
        return info

    monkeypatch.setattr(ox, "export_graph", duplicating)
    out = tmp_path / "dup"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "k_proj.shared is stored 2 times" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".dup*"))


def test_export_fails_when_onnx_runtime_disagrees_with_pytorch(onnx_exports, tmp_path,
                                                              monkeypatch, capsys):
    """The check after export (ONNX Runtime's outputs against PyTorch's) fails the export in
    one line and leaves nothing. Simulated: PyTorch's side of the comparison is shifted by
    1e-2 of its largest magnitude, past FP32_TOLERANCE (1e-4); the graph is the real one."""
    import layershare.formats.onnx_export as ox

    _, checkpoint, _, _ = onnx_exports("llama-residual")
    capsys.readouterr()  # the fixture's exporter messages, when it was built just now
    real = ox.torch_outputs

    def shifted(model, feed):
        outs = real(model, feed)
        return [outs[0] + 1e-2 * outs[0].abs().max(), *outs[1:]]

    monkeypatch.setattr(ox, "torch_outputs", shifted)
    out = tmp_path / "off"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ONNX Runtime's outputs differ from PyTorch's" in err[0], err
    assert not out.exists() and not list(tmp_path.glob(".off*"))


def test_int8_runs_within_tolerance_and_keeps_shared_tensors_once(onnx_exports):
    from layershare.formats.onnx_check import check_shared_once, read_initializers

    model, _, out, int8 = onnx_exports("llama-residual")
    meta = json.loads((int8 / "onnx.json").read_text())
    assert meta["quantize"] == "int8" and meta["int8"]["max_rel_error"] < INT8_TOLERANCE
    check_shared_once(int8 / "model.onnx")
    inits = read_initializers(int8 / "model.onnx")
    # one quantized copy per shared S (2 groups of 2 layers -> 2 per matrix kind), and the
    # tied embedding once: read by the Gather and the head alike
    q_shared = [n for n in inits if n.endswith("q_proj.shared.q8")]
    assert len(q_shared) == 2
    import onnx
    nodes = onnx.load(str(int8 / "model.onnx"), load_external_data=False).graph.node
    table = next(n.input[0] for n in nodes if n.op_type == "Gather" and n.input[1] == "input_ids")
    assert table.endswith(".q8") and inits[table].dtype == np.uint8
    assert [n.op_type for n in nodes if table in n.input] == ["Gather", "MatMulNBits"]
    assert meta["int8"]["initializer_bytes"] < 0.6 * meta["fp32"]["initializer_bytes"]
    ids = torch.randint(3, 96, (1, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(input_ids=ids, use_cache=False).logits.numpy()
    logits, *_ = _session(int8).run(None, _feed(model, ids))
    assert np.abs(logits - expected).max() < INT8_TOLERANCE * np.abs(expected).max()


def test_blockwise_int8_round_trip():
    from layershare.formats.onnx_quantize import dequantize_blocks, quantize_blocks

    w = np.random.default_rng(0).normal(size=(7, 45)).astype(np.float32)
    q, s = quantize_blocks(w)
    assert q.shape == (7, 2, 32) and q.dtype == np.uint8 and s.shape == (14,)
    back = dequantize_blocks(q, s, 45)
    step = np.repeat(s.reshape(7, 2), 32, axis=1)[:, :45]
    assert np.all(np.abs(back - w) <= step / 2 + 1e-7)


def test_export_cli_prints_a_summary(onnx_exports, tmp_path, capsys):
    _, checkpoint, _, _ = onnx_exports("bert-residual")
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "encoder" in out and "initializers" in out and "ORT vs PyTorch" in out
    assert (tmp_path / "o" / "tokenizer.json").is_file()
    assert (tmp_path / "o" / "config.json").is_file()


def _bad_cases(tmp_path, checkpoint):
    notmodel = tmp_path / "notmodel"
    notmodel.mkdir()
    (notmodel / "readme.txt").write_text("hello")
    afile = tmp_path / "afile"
    afile.write_text("x")
    return {
        "unknown format": ([str(checkpoint), "--format", "tflite"], "unknown export format"),
        "not a model": ([str(notmodel), "--format", "onnx"], "not a transformers model"),
        "unwritable out": ([str(checkpoint), "--format", "onnx"], "cannot write"),
        "bad quantize": ([str(checkpoint), "--format", "onnx", "--quantize", "int3"],
                         "unknown --quantize"),
        "bad opset": ([str(checkpoint), "--format", "onnx", "--opset", "7"], "opset"),
        "missing": ([str(tmp_path / "nope"), "--format", "onnx"], "no such file"),
    }, afile


@pytest.mark.parametrize("case", ["unknown format", "not a model", "unwritable out",
                                  "bad quantize", "bad opset", "missing"])
def test_bad_input_is_one_line_exit_2_and_no_output(onnx_exports, tmp_path, capsys, case):
    _, checkpoint, _, _ = onnx_exports("llama-residual")
    cases, afile = _bad_cases(tmp_path, checkpoint)
    argv, message = cases[case]
    out = afile / "sub" if case == "unwritable out" else tmp_path / "out"
    assert main(["export", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("layershare: error: ") and message in err[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_read_only_parent_is_refused_before_any_work(onnx_exports, tmp_path, capsys):
    """A parent the process cannot write: chmod 0500 for a user; for root (CI), for whom
    modes do not count, a read-only tmpfs mount, or where mounting is refused /proc, where
    not even root may create an entry."""
    _, checkpoint, _, _ = onnx_exports("llama-residual")
    parent = tmp_path / "ro"
    parent.mkdir()
    with read_only(parent) as parent:
        assert main(["export", str(checkpoint), "--format", "onnx", "--out",
                     str(parent / "o")]) == 2
        assert "cannot write" in capsys.readouterr().err
        assert not (parent / "o").exists()


@contextlib.contextmanager
def read_only(directory):
    """``directory`` made read-only, or another directory this process cannot write."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield directory
        finally:
            directory.chmod(0o700)
        return
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(directory)],
                           capture_output=True, text=True) if shutil.which("mount") else None
    if mount is None or mount.returncode != 0:
        yield Path("/proc/self")
        return
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)
