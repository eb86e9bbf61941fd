"""``layershare export``: a model for a runtime, its shared tensors kept shared.

    layershare export compact/ --format onnx --out deploy/ [--opset 18] [--quantize int8]

SRC is a layershare checkpoint, a transformers model directory or a short name
(formats/pretrained.py). Decoder LMs export with past key/values (ONNX Runtime generates
token by token: ``layershare generate deploy/ --runtime onnx``), encoders their last hidden
state. The export fails, leaving no output, if a shared tensor was stored twice or ONNX
Runtime's outputs differ from PyTorch's (see :mod:`layershare.formats.onnx`).
"""

from __future__ import annotations

from ..formats.onnx import DEFAULT_OPSET, FORMATS, QUANTIZE
from .common import add_overwrite, out_arg


def add_commands(sub) -> None:
    """Register ``export`` on an ``add_subparsers`` object."""
    p = sub.add_parser("export", help="export a model for a runtime (ONNX), shared tensors once")
    p.add_argument("src", help="layershare checkpoint, transformers directory or short name")
    p.add_argument("--format", required=True, help=f"{' | '.join(FORMATS)}")
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--quantize", default=None, help=f"{' | '.join(QUANTIZE)}: weight-only, "
                                                    "blockwise (32); int4 keeps the embedding int8")
    add_overwrite(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> None:
    import json

    from ..formats.onnx import META, export

    out = export(args.src, args.out, format=args.format, opset=args.opset,
                 quantize=args.quantize, overwrite=args.overwrite)
    meta = json.loads((out / META).read_text())
    fp32 = meta["fp32"]
    print(f"wrote {out}: {meta['task']}, {fp32['initializers']} initializers, unique weights "
          f"{fp32['unique_bytes'] / 2**20:.2f} MiB, "
          f"fp32 file {fp32['file_bytes'] / 2**20:.2f} MiB, "
          f"ORT vs PyTorch {fp32['max_rel_error']:.1e}")
    if meta.get("quantize"):
        kind = meta["quantize"]
        q = meta[kind]
        print(f"{kind}: {q['quantized_tensors']} tensors quantized, file "
              f"{q['file_bytes'] / 2**20:.2f} MiB, ORT {kind} vs PyTorch fp32 "
              f"{q['max_rel_error']:.1e}")
