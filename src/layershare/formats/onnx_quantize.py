"""Weight-only int8 (or int4) for an exported graph, each shared tensor quantized once.

Scheme: blockwise symmetric int8 along the input dimension (blocks of :data:`BLOCK` = 32
values, one fp32 scale per block: ``q = round(w / s) + 128``, ``s = max|w_block| / 127``),
the layout of ONNX Runtime's ``com.microsoft.MatMulNBits`` with ``bits=8``: ``B`` is
``N x ceil(K / 32) x 32`` uint8 (the torch ``Linear`` weight's rows, zero-padded), ``scales``
``N * ceil(K / 32)``, zero point the default ``2^(bits-1) = 128``. The kernel quantizes
the activations to int8 on the fly (``accuracy_level`` 4, :data:`ACCURACY_LEVEL`); the
embedding lookup dequantizes the gathered rows to fp32.

``bits=4`` (``--quantize int4``, the rival at fewer bytes than int8): the same blocks with
``q = round(w / s) + 8``, ``s = max|w_block| / 7``, two values per byte (the even one in the
low nibble: ``B`` is ``N x kb x 16``), zero point 8. Tables read by a ``Gather`` (the embedding,
tied to the head in SmolLM2) stay int8 so that one stored tensor serves both readers; every
other matrix is int4 (the usual "int4 layers, int8 embedding" recipe).

What is quantized: every ``MatMul`` whose ``B`` is a 2-D float initializer or its
``Transpose`` (the form the exporter gives ``F.linear`` on 3-D input when a weight is read
by several nodes: a Basis Sharing basis; the ``Transpose`` is then dropped), every ``Gemm``
(``alpha = beta = 1``) with an initializer ``B`` (its bias becomes an ``Add``) and every
``Gather`` over a 2-D float initializer (embedding tables), when the input dimension ``K``
is at least one block. Norm weights, biases, per-layer diagonals and thin factors with
``K < 32`` stay fp32.

Why not ``onnxruntime.quantization``: ``quantize_dynamic`` handles ``MatMul`` but not
``Gemm`` (the form the export uses so that a weight is read as stored) and quantizes a
tied embedding twice (the table for ``Gather``, its transpose for the head); its
``MatMulNBitsQuantizer`` likewise works node by node. Here the quantized tensor is cached by
the *initializer* it came from, so K layers reading one shared ``S`` read one quantized
``S``; and a ``Gather`` reads the same uint8 blocks as the head's ``MatMulNBits`` (dequantized
per gathered row: ``Cast``, ``- 128``, ``* scale``), so a tied embedding is stored once in
int8 too. The check afterwards (:func:`~layershare.formats.onnx_check.check_shared_once`
without a model: no two initializers with equal content) enforces it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLOCK = 32
#: MatMulNBits ``accuracy_level`` 4: the activations are quantized to int8 per block too and
#: the kernel runs int8 dot products; level 0 computes in fp32 and dequantizes B on every
#: call, which made decoding an order of magnitude slower when it was tried (the level is
#: the one benchmarks/results/deploy.md uses).
ACCURACY_LEVEL = 4
MS_DOMAIN = "com.microsoft"


def quantize_blocks(weight: np.ndarray, block: int = BLOCK,
                    bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` (N x K, fp32) -> (uint8 N x kb x block*bits/8, fp32 scales N*kb)."""
    n, k = weight.shape
    kb = -(-k // block)
    top = 2 ** (bits - 1) - 1  # 127 or 7
    padded = np.zeros((n, kb * block), np.float32)
    padded[:, :k] = weight
    blocks = padded.reshape(n, kb, block)
    scale = np.abs(blocks).max(axis=2) / top
    scale[scale == 0] = 1.0
    q = (np.clip(np.rint(blocks / scale[..., None]), -top, top) + top + 1).astype(np.uint8)
    if bits == 4:
        q = q[..., 0::2] | (q[..., 1::2] << 4)
    return q, scale.astype(np.float32).reshape(-1)


def dequantize_blocks(q: np.ndarray, scale: np.ndarray, k: int, bits: int = 8) -> np.ndarray:
    """The fp32 ``N x K`` weight that (``q``, ``scale``) stand for."""
    if bits == 4:
        q = np.stack([q & 15, q >> 4], axis=-1).reshape(*q.shape[:2], -1)
    n, kb, block = q.shape
    w = (q.astype(np.float32) - 2 ** (bits - 1)) * scale.reshape(n, kb, 1)
    return w.reshape(n, kb * block)[:, :k]


class _Rewriter:
    def __init__(self, model, bits: int):
        from onnx import numpy_helper
        self.model, self.graph, self.bits = model, model.graph, bits
        self.init = {i.name: i for i in self.graph.initializer}
        self.to_array = numpy_helper.to_array
        self.from_array = numpy_helper.from_array
        self.cache: dict[tuple[str, bool], tuple[str, str, int, int, int]] = {}
        # tables that a Gather reads stay int8: the Gather dequantizes 8-bit rows
        self.gathered = {n.input[0] for n in self.graph.node if n.op_type == "Gather"}
        self.new_inits, self.counter = [], 0
        # output of Transpose(perm 1,0) of an initializer -> that initializer
        self.transposed = {n.output[0]: n.input[0] for n in self.graph.node
                           if n.op_type == "Transpose" and n.input[0] in self.init
                           and list(_attr(n, "perm", [1, 0])) == [1, 0]}

    def name(self, base: str) -> str:
        self.counter += 1
        return f"{base}__q8_{self.counter}"

    def float2d(self, name: str):
        init = self.init.get(name)
        if init is None:
            return None
        a = self.to_array(init)
        return a if a.ndim == 2 and a.dtype == np.float32 else None

    def quantized(self, name: str, transpose: bool):
        """(B name, scales name, K, N, bits) of initializer ``name`` as N x K rows, made once."""
        key = (name, transpose)
        if key not in self.cache:
            bits = 8 if name in self.gathered else self.bits
            w = self.to_array(self.init[name])
            w = np.ascontiguousarray(w.T if transpose else w)
            q, s = quantize_blocks(w, bits=bits)
            base = f"{name}.T" if transpose else name
            bq, bs = f"{base}.q{bits}", f"{base}.q{bits}_scales"
            self.new_inits += [self.from_array(q, bq), self.from_array(s, bs)]
            self.cache[key] = (bq, bs, w.shape[1], w.shape[0], bits)
        return self.cache[key]

    def const(self, value: np.ndarray, base: str) -> str:
        name = self.name(base)
        self.new_inits.append(self.from_array(value, name))
        return name


def _attr(node, name, default):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def quantize_int8(path: str | Path) -> dict:
    """:func:`quantize_weights` with 8 bits."""
    return quantize_weights(path, bits=8)


def quantize_weights(path: str | Path, bits: int = 8) -> dict:
    """Rewrite the ONNX file ``path`` (and its external data) in place with int8 or int4
    weights; returns the sizes and counts (:func:`check_shared_once` has passed on the
    result)."""
    import onnx
    from onnx import helper

    from .onnx_check import check_shared_once

    path = Path(path)
    model = onnx.load(str(path), load_external_data=True)
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    rw = _Rewriter(model, bits)
    nodes, quantized = [], 0
    for node in model.graph.node:
        new = _rewrite(rw, node, helper)
        quantized += new is not None
        nodes += new if new is not None else [node]
    nodes = _live(nodes, {o.name for o in model.graph.output})
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + rw.new_inits)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    data = path.name + ".data"
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data, size_threshold=1024)
    report = check_shared_once(path)
    report.update(quantized_nodes=quantized, quantized_tensors=len(rw.cache))
    return report


def _rewrite(rw: _Rewriter, node, helper):
    """Replacement nodes for ``node``, or None to keep it."""
    if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in rw.transposed:
        source = rw.transposed[node.input[1]]  # B = W^T: W is already the N x K rows
        w = rw.float2d(source)
        if w is None or w.shape[1] < BLOCK:
            return None
        return [_matmul_nbits(node.input[0], rw.quantized(source, transpose=False),
                              node.output[0], node.name, helper)]
    if node.op_type == "MatMul" and len(node.input) == 2:
        w = rw.float2d(node.input[1])
        if w is None or w.shape[0] < BLOCK:
            return None
        return [_matmul_nbits(node.input[0], rw.quantized(node.input[1], transpose=True),
                              node.output[0], node.name, helper)]
    if node.op_type == "Gemm":
        if _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0 or _attr(
                node, "transA", 0):
            return None
        w = rw.float2d(node.input[1])
        trans = bool(_attr(node, "transB", 0))
        if w is None or (w.shape[1] if trans else w.shape[0]) < BLOCK:
            return None
        weight = rw.quantized(node.input[1], transpose=not trans)
        if len(node.input) < 3 or not node.input[2]:
            return [_matmul_nbits(node.input[0], weight, node.output[0], node.name, helper)]
        mid = rw.name(node.output[0])
        return [_matmul_nbits(node.input[0], weight, mid, node.name, helper),
                helper.make_node("Add", [mid, node.input[2]], [node.output[0]],
                                 name=f"{node.name}_bias")]
    if node.op_type == "Gather" and _attr(node, "axis", 0) == 0:
        w = rw.float2d(node.input[0])
        if w is None or w.shape[1] < BLOCK:
            return None
        return _gather_dequant(rw, node, helper)
    return None


def _live(nodes: list, outputs: set[str]) -> list:
    """``nodes`` without those whose outputs nobody reads any more (a ``Transpose`` of a
    weight that every reader now takes quantized), repeated until nothing changes."""
    while True:
        read = outputs | {i for n in nodes for i in n.input}
        kept = [n for n in nodes if any(o in read for o in n.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def _matmul_nbits(a, weight, out, name, helper):
    bq, bs, k, n, bits = weight
    return helper.make_node("MatMulNBits", [a, bq, bs], [out], name=f"{name or out}_q{bits}",
                            domain=MS_DOMAIN, K=k, N=n, bits=bits, block_size=BLOCK,
                            accuracy_level=ACCURACY_LEVEL)


def _gather_dequant(rw: _Rewriter, node, helper) -> list:
    """Rows of the int8 table for ``ids``, dequantized: the table's blocks are the head's
    ``MatMulNBits`` B when the embedding is tied (one tensor), its scales gathered by
    ``ids * kb + arange(kb)`` from the same 1-D scales."""
    bq, bs, k, n, _ = rw.quantized(node.input[0], transpose=False)  # 8 bits: self.gathered
    kb = -(-k // BLOCK)
    ids, out = node.input[1], node.output[0]
    t = lambda s: rw.name(f"{out}_{s}")  # noqa: E731
    rows, rows_f, centred, idx_u, idx_k, idx, sc, sc_u, deq, shape, flat = (
        t(s) for s in ("rows", "f", "c", "u", "k", "idx", "s", "su", "dq", "shape", "flat"))
    kb_c = rw.const(np.array(kb, np.int64), "kb")
    ar_c = rw.const(np.arange(kb, dtype=np.int64), "arange")
    axes = rw.const(np.array([-1], np.int64), "axes")
    zero = rw.const(np.array(128.0, np.float32), "zp")
    width = rw.const(np.array([kb * BLOCK], np.int64), "width")
    nodes = [
        helper.make_node("Gather", [bq, ids], [rows], axis=0),
        helper.make_node("Cast", [rows], [rows_f], to=1),
        helper.make_node("Sub", [rows_f, zero], [centred]),
        helper.make_node("Unsqueeze", [ids, axes], [idx_u]),
        helper.make_node("Mul", [idx_u, kb_c], [idx_k]),
        helper.make_node("Add", [idx_k, ar_c], [idx]),
        helper.make_node("Gather", [bs, idx], [sc], axis=0),
        helper.make_node("Unsqueeze", [sc, axes], [sc_u]),
        helper.make_node("Mul", [centred, sc_u], [deq]),
        helper.make_node("Shape", [ids], [shape]),
        helper.make_node("Concat", [shape, width], [flat], axis=0),
    ]
    if kb * BLOCK == k:
        return nodes + [helper.make_node("Reshape", [deq, flat], [out])]
    full = t("full")
    starts = rw.const(np.array([0], np.int64), "starts")
    ends = rw.const(np.array([k], np.int64), "ends")
    return nodes + [helper.make_node("Reshape", [deq, flat], [full]),
                    helper.make_node("Slice", [full, starts, ends, axes], [out])]
