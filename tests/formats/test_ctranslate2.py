"""The CTranslate2 model.bin reader: round trip, legacy layout, and clear errors."""

import struct

import numpy as np
import pytest

from layershare.errors import LayershareError
from layershare.formats.ctranslate2 import Variable, read_model, write_model


def _arrays():
    rng = np.random.default_rng(0)
    return {"encoder/layer_0/linear/weight": rng.standard_normal((3, 4)).astype(np.float16),
            "encoder/layer_0/linear/bias": rng.standard_normal(3).astype(np.float32),
            "decoder/embeddings/weight": rng.integers(-128, 127, (5, 2)).astype(np.int8),
            "decoder/embeddings/weight_scale": np.float32([1, 2, 3, 4, 5]),
            "decoder/num_heads": np.int16(6), "decoder/activation": np.int8(3),
            "decoder/steps": np.int32([7, -8])}


def test_round_trip(tmp_path):
    arrays = _arrays()
    path = write_model(tmp_path / "model.bin", "TinySpec", arrays,
                       {"decoder/projection/weight": "decoder/embeddings/weight"}, revision=3)
    model = read_model(tmp_path)  # a directory holding model.bin works too
    assert (model.version, model.spec, model.revision) == (6, "TinySpec", 3)
    assert set(model.variables) == set(arrays)
    for name, value in arrays.items():
        var = model.variables[name]
        assert var.shape == np.shape(value) and var.rank == np.ndim(value)
        assert var.dtype == np.asarray(value).dtype.name
        np.testing.assert_array_equal(var.array(), value)
    assert model.get("decoder/projection/weight") is model.variables["decoder/embeddings/weight"]
    assert model.variables["decoder/num_heads"].scalar() == 6
    assert path.stat().st_size == len(path.read_bytes())
    with pytest.raises(LayershareError, match="no variable"):
        model.get("missing")


def test_bfloat16_widened():
    values = np.float32([1.5, -2.0, 0.15625])
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()  # exact in bf16
    np.testing.assert_array_equal(Variable("x", (3,), "bfloat16", raw).array(), values)


def _string(text):
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def test_legacy_version_3_layout(tmp_path):
    """Binary versions <= 3 give an item size and an item count instead of a dtype id."""
    data = (struct.pack("<I", 3) + _string("OldSpec") + struct.pack("<II", 1, 1)
            + _string("w") + struct.pack("<B2I", 2, 2, 2) + struct.pack("<BI", 4, 4)
            + np.float32([1, 2, 3, 4]).tobytes() + struct.pack("<I", 0))
    (tmp_path / "model.bin").write_bytes(data)
    model = read_model(tmp_path / "model.bin")
    assert model.version == 3 and model.variables["w"].dtype == "float32"
    np.testing.assert_array_equal(model.variables["w"].array(), [[1, 2], [3, 4]])


def test_wrong_magic(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(LayershareError, match="not a CTranslate2 model"):
        read_model(path)
    path.write_bytes(b"\x01")
    with pytest.raises(LayershareError, match="not a CTranslate2 model"):
        read_model(path)


@pytest.mark.parametrize("cut", [5, 20, 60, -9, -1])
def test_truncated(tmp_path, cut):
    path = write_model(tmp_path / "model.bin", "TinySpec", _arrays(), {"a": "decoder/num_heads"})
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(LayershareError, match="truncated"):
        read_model(path)


def test_corrupted(tmp_path):
    path = write_model(tmp_path / "model.bin", "TinySpec", _arrays())
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(LayershareError, match="after the last record"):
        read_model(path)
    path = write_model(tmp_path / "model.bin", "TinySpec", {"w": np.float32([1, 2])})
    data = bytearray(path.read_bytes())
    data[data.index(b"w\0") + 2 + 1 + 4] = 9  # the dtype id of "w"
    path.write_bytes(bytes(data))
    with pytest.raises(LayershareError, match="unknown dtype id 9"):
        read_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(LayershareError, match="no such file"):
        read_model(tmp_path / "model.bin")
