"""formats/lazy.read_tensors: plain reads at the header's offsets equal safetensors' own loader."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from layershare.errors import LayershareError
from layershare.formats.lazy import read_tensors


def test_read_tensors_equals_safetensors_for_every_dtype(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"f32": torch.randn(3, 5, generator=g), "f16": torch.randn(4, generator=g).half(),
               "bf16": torch.randn(2, 2, generator=g).bfloat16(), "i64": torch.arange(7),
               "u8": torch.arange(5, dtype=torch.uint8), "flag": torch.tensor([True, False]),
               "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5)}
    path = tmp_path / "x.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    expected = load_file(path)
    got = read_tensors(path, list(tensors))
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        torch.testing.assert_close(got[name], value, rtol=0, atol=0)
    got["f32"] += 1  # its own memory: writable, the file is untouched
    torch.testing.assert_close(load_file(path)["f32"], expected["f32"])


def test_read_tensors_reports_a_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x05\x00")
    with pytest.raises(LayershareError, match="not a safetensors file"):
        read_tensors(path, ["x"])
