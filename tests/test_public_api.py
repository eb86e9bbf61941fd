"""The public functions: convert, compress, distill and export at the top level."""

import pytest
import tiny_models as T
import torch

import layershare


def test_top_level_functions_are_the_implementations():
    from layershare.compress.api import compress
    from layershare.formats.onnx import export
    from layershare.train.distill_api import distill

    assert layershare.distill is distill and layershare.export is export
    assert layershare.compress.compress is compress  # the package forwards calls (below)
    import layershare.compress.whiten as whiten  # its modules stay importable
    assert callable(whiten.whitened_factors)


def test_compress_is_callable_at_the_top_level():
    model = T.llama().eval()
    x = torch.randint(0, T.VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    result = layershare.compress(model, calib=[{"input_ids": x}], method="lowrank",
                                 group_size=1, keep=0.7, progress=False)
    assert result.model is model and 0.5 < result.keep <= 0.7
    assert isinstance(layershare.count(model).compression, float)


def test_distill_refuses_bad_arguments_in_one_line(tmp_path):
    with pytest.raises(layershare.LayershareError, match="steps and batch_size"):
        layershare.distill(tmp_path / "s", "smollm2-135m", tmp_path / "o", steps=0)
    with pytest.raises(layershare.LayershareError, match="data is brown"):
        layershare.distill(tmp_path / "s", "smollm2-135m", tmp_path / "o", data="")
