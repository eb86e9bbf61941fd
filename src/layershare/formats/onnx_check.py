"""Each shared tensor once: count an ONNX file's initializers by content hash.

An initializer is stored once and any number of nodes may read it; a shared tensor that an
exporter or a quantizer copied shows up as two initializers with the same bytes -- or, when
an optimiser folded a ``Transpose`` into a new initializer, as the transposed bytes. Both are
caught here:

* against the model (fp32 export): every unique tensor of the model (``unique_state``: a
  shared parameter once) with ``c`` equal-content twins may appear at most ``c`` times in
  the graph, counting an initializer that holds its transpose as an appearance;
* on its own (after quantization, when the bytes no longer match the model's): no two
  initializers of at least :data:`MIN_BYTES` hold the same content or each other's
  transpose.

Sizes: ``initializer_bytes`` (the raw tensor data) against ``unique_bytes`` (the model's
unique tensors in fp32) -- the export targets a file within 5% of the unique weights.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import LayershareError

MIN_BYTES = 1024  # smaller initializers are graph constants (shapes, scalars, small norms)


def _hash(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()


def _shape_free_hash(array: np.ndarray) -> str:
    """Content and dtype, not shape: a reshape of the same data is the same tensor."""
    a = np.ascontiguousarray(array)
    return hashlib.sha256(str(a.dtype).encode() + a.tobytes()).hexdigest()


def read_initializers(path: str | Path) -> dict[str, np.ndarray]:
    """name -> array of every initializer of the ONNX file (external data read too)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=True)
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def file_bytes(path: str | Path) -> int:
    """Bytes on disk of the ONNX file and its external data files beside it."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _keys(array: np.ndarray) -> set[str]:
    keys = {_shape_free_hash(array)}
    if array.ndim == 2:
        keys.add(_shape_free_hash(array.T))
    return keys


def duplicates_against_model(initializers: dict[str, np.ndarray],
                             tensors: dict[str, np.ndarray]) -> dict[str, int]:
    """Model tensor name -> times it is stored, for those stored more often than the model
    holds that content (a copied shared tensor, maybe transposed)."""
    expected: Counter = Counter()
    first: dict[str, str] = {}
    by_key: dict[str, str] = {}
    for name, array in tensors.items():
        if array.nbytes < MIN_BYTES:
            continue
        h = _shape_free_hash(array)
        expected[h] += 1
        first.setdefault(h, name)
        for key in _keys(array):
            by_key.setdefault(key, h)
    found: Counter = Counter()
    for array in initializers.values():
        if array.nbytes < MIN_BYTES:
            continue
        hits = {by_key[k] for k in _keys(array) if k in by_key}
        for h in hits:
            found[h] += 1
    return {first[h]: n for h, n in found.items() if n > expected[h]}


def duplicates_among(initializers: dict[str, np.ndarray]) -> dict[str, int]:
    """Initializer name -> copies, for contents (or transposes) stored more than once."""
    holders: dict[str, set[str]] = {}
    for name, array in initializers.items():
        if array.nbytes >= MIN_BYTES:
            for key in _keys(array):
                holders.setdefault(key, set()).add(name)
    return {sorted(names)[0]: len(names) for names in holders.values() if len(names) > 1}


def check_shared_once(path: str | Path, tensors: dict[str, np.ndarray] | None = None) -> dict:
    """Raise :class:`LayershareError` if a tensor is stored twice in the ONNX file ``path``;
    return the sizes (``initializers``, ``initializer_bytes``, ``file_bytes`` and, given the
    model's unique ``tensors``, ``unique_bytes`` as fp32)."""
    initializers = read_initializers(path)
    if tensors is not None:
        dupes = duplicates_against_model(initializers, tensors)
    else:
        dupes = duplicates_among(initializers)
    if dupes:
        name, times = next(iter(dupes.items()))
        more = f" (and {len(dupes) - 1} more)" if len(dupes) > 1 else ""
        raise LayershareError(f"export: tensor {name} is stored {times} times in {Path(path).name}"
                              f"{more}; a shared tensor must be one initializer")
    report = {"initializers": len(initializers),
              "initializer_bytes": int(sum(a.nbytes for a in initializers.values())),
              "file_bytes": file_bytes(path)}
    if tensors is not None:
        report["unique_bytes"] = int(sum(a.size * 4 for a in tensors.values()))
    return report
