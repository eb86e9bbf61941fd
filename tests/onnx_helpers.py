"""Tiny converted models exported to ONNX once per test session (tests/formats, tests/deploy).

Each export takes ~10-30 s on two cores (torch.onnx's dynamo exporter), so the three exports
are made once, lazily, by the ``onnx_exports`` fixture (tests/conftest.py).
"""

import os

import tiny_models as T
from requirements import need_module

import layershare

#: name -> (builder, convert options); shared tensors in each: residual S, a shared basis U
CASES = {
    "llama-residual": (T.llama, dict(method="residual", group_size=2, rank=4)),
    "gpt2-lowrank": (T.gpt2, dict(method="lowrank", group_size=2, rank=8)),
    "bert-residual": (T.bert, dict(method="residual", group_size=2, rank=4)),
}
QUANTIZED = {"llama-residual"}  # exported with --quantize int8 as well
INT8_TOLERANCE = 2e-2  # int8 vs fp32 PyTorch: max |difference| / max |output|


def require_onnx():
    """Skip without the [onnx] extra, unless CI installed it or ``LAYERSHARE_REQUIRE`` names
    onnx (then a missing one fails: tests/requirements.py)."""
    if "onnx" in os.environ.get("LAYERSHARE_EXTRAS", "").split(","):
        import onnx  # noqa: E401,F401
        return
    for name in ("onnx", "onnxruntime", "onnxscript"):
        need_module(name, "onnx")


def word_tokenizer(directory):
    """A word-level tokenizer of the tiny vocabulary, saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[UNK]", "the", "cat", "sat", "on", "mat"] + [f"w{i}" for i in range(T.VOCAB - 6)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = directory / "tokenizer.json"
    tok.save(str(path))
    return path


def build(root, name):
    """(converted model, its checkpoint dir, its ONNX export dir [, int8 export dir])."""
    from layershare.formats.onnx import export

    builder, options = CASES[name]
    model = layershare.convert(builder().eval(), **options)
    checkpoint = root / f"{name}-ckpt"
    tok = word_tokenizer(root)
    layershare.save(model, checkpoint, extra_files={"tokenizer.json": tok})
    out = export(checkpoint, root / f"{name}-onnx", progress=lambda *_: None)
    int8 = None
    if name in QUANTIZED:
        int8 = export(checkpoint, root / f"{name}-int8", quantize="int8",
                      progress=lambda *_: None)
    return model, checkpoint, out, int8
