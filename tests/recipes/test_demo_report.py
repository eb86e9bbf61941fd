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
        {"label": "original fp32", "file": "-", "bytes": 513 * MiB, "keep": 1.0, "perplexity": 34.8},
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
