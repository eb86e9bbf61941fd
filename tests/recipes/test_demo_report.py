"""The main job's table, advice and plot (recipes/demo_compress.py) on hand-made rows."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_compress",
                                                  ROOT / "recipes" / "demo_compress.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MiB = 2 ** 20
ROWS = [{"label": "as shipped (GGUF Q4_1)", "file": "x.gguf", "bytes": 98 * MiB, "keep": 1.0,
         "perplexity": 34.8},
        {"label": "original fp32", "file": "-", "bytes": 513 * MiB, "keep": 1.0,
         "perplexity": 34.8},
        {"label": "original int8 (ONNX Runtime)", "file": "m", "bytes": 145 * MiB, "keep": 1.0,
         "perplexity": 34.9},
        {"label": "original int4 (ONNX Runtime)", "file": "m", "bytes": 94 * MiB, "keep": 1.0,
         "perplexity": 45.3},
        {"label": "SVD-LLM keep 0.8, bf16", "file": "m", "bytes": 216 * MiB, "keep": 0.8,
         "perplexity": 135.0}]


def test_pareto_and_advice_follow_the_figures(demo):
    front = demo.pareto(ROWS)
    assert [r["label"] for r in front] == ["original int4 (ONNX Runtime)", "as shipped (GGUF Q4_1)"]
    text = "\n".join(demo.advice(ROWS))
    assert "from 94 MiB to 98 MiB: **original int4 (ONNX Runtime)**" in text
    assert "from 98 MiB up: **as shipped (GGUF Q4_1)**" in text
    assert "SVD-LLM keep 0.8, bf16 (216 MiB, 135.00) is beaten by as shipped" in text


def test_report_writes_table_json_and_plot(demo, tmp_path):
    text = demo.report(ROWS, tmp_path, 60.0, 4096, "16 windows")
    assert "| original int8 (ONNX Runtime) | m | 145.0 | 1.000 | 34.90 | 1.00 |" in text
    assert json.loads((tmp_path / "results.json").read_text())[0]["bytes"] == 98 * MiB
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert not list(tmp_path.glob(".*tmp*"))


def test_exported_rows_of_a_tiny_compressed_llama(demo, tmp_path):
    """``exported`` on a layershare checkpoint (what the main job does with the compressed
    model): an int8 ONNX Runtime copy, its bytes and a perplexity close to PyTorch's."""
    import sys

    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_models as T
    from onnx_helpers import require_onnx, word_tokenizer

    import layershare
    from layershare.evaluate.perplexity import lm_quality

    require_onnx()
    model = layershare.convert(T.llama().eval(), method="lowrank", group_size=1, rank=8)
    ckpt = tmp_path / "ckpt"
    layershare.save(model, ckpt, extra_files={"tokenizer.json": word_tokenizer(tmp_path)})
    windows = torch.randint(0, T.VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    rows = demo.exported(ckpt, "tiny keep 1", tmp_path / "out", windows, ("int8",))
    (row,) = rows
    assert row["label"] == "tiny keep 1 int8 (ONNX Runtime)" and row["bytes"] > 1000
    assert (tmp_path / "out" / "onnx" / "tiny-keep-1-int8" / "model.onnx").is_file()
    assert not (tmp_path / "out" / "onnx" / "tiny-keep-1").exists()  # the fp32 export goes
    reference = lm_quality(model, windows, batch_size=1, progress=False)["perplexity"]
    assert abs(row["perplexity"] / reference - 1) < 0.05
