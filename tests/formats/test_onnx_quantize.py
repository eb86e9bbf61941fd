"""``quantize_int8`` on hand-built graphs: the forms the exporter gives shared weights."""

import numpy as np
import pytest
from onnx_helpers import require_onnx


@pytest.fixture(autouse=True)
def _onnx():
    require_onnx()


def _graph_with_shared_transposed_weight(path, w):
    """x -> MatMul(x, Transpose(W)) twice (two layers reading one basis W, N x K), summed:
    the pattern torch.onnx gives F.linear on 3-D input when the weight has several readers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape
    nodes = [helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "Wt"], ["y1"]),
             helper.make_node("MatMul", ["y1_in", "Wt"], ["y2"]),
             helper.make_node("Identity", ["x"], ["y1_in"]),
             helper.make_node("Add", ["y1", "y2"], ["y"])]
    graph = helper.make_graph(
        nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, n])],
        initializer=[numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data",
                    size_threshold=0)


def test_a_shared_transposed_weight_is_quantized_once_and_the_transpose_dropped(tmp_path):
    import onnx
    import onnxruntime as ort

    from layershare.formats.onnx_check import read_initializers
    from layershare.formats.onnx_quantize import quantize_int8

    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 64)).astype(np.float32)
    x = rng.standard_normal((1, 3, 64)).astype(np.float32)
    path = tmp_path / "model.onnx"
    _graph_with_shared_transposed_weight(path, w)
    expected = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(expected, 2 * x @ w.T, rtol=1e-4, atol=1e-4)

    report = quantize_int8(path)
    assert report["quantized_nodes"] == 2 and report["quantized_tensors"] == 1
    inits = read_initializers(path)
    assert "W" not in inits and [n for n in inits if n.endswith(".q8")] == ["W.q8"]
    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    assert "Transpose" not in ops and ops.count("MatMulNBits") == 2
    got = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert np.abs(got - expected).max() < 2e-2 * np.abs(expected).max()


def test_int4_blocks_round_trip_within_half_a_step():
    from layershare.formats.onnx_quantize import dequantize_blocks, quantize_blocks

    w = np.random.default_rng(1).standard_normal((5, 45)).astype(np.float32)
    q, s = quantize_blocks(w, bits=4)
    assert q.shape == (5, 2, 16) and q.dtype == np.uint8 and s.shape == (10,)
    back = dequantize_blocks(q, s, 45, bits=4)
    step = np.repeat(s.reshape(5, 2), 32, axis=1)[:, :45]
    assert np.all(np.abs(back - w) <= step / 2 + 1e-6)


def test_int4_runs_in_onnxruntime_and_keeps_the_gathered_table_int8(tmp_path):
    """int4 MatMulNBits through ONNX Runtime on the shared-weight graph: the packing is the
    kernel's (a wrong nibble order would give errors of the weights' size, not 1/7 steps)."""
    import onnxruntime as ort

    from layershare.formats.onnx_check import read_initializers
    from layershare.formats.onnx_quantize import quantize_weights

    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 64)).astype(np.float32)
    x = rng.standard_normal((1, 3, 64)).astype(np.float32)
    path = tmp_path / "model.onnx"
    _graph_with_shared_transposed_weight(path, w)
    quantize_weights(path, bits=4)
    assert [n for n in read_initializers(path) if n.endswith((".q4", ".q8"))] == ["W.q4"]
    got = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    expected = 2 * x @ w.T
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert 1e-3 < rel < 0.15  # int4 error: clearly lossy, clearly not garbage
