"""Verbs that share and unshare weights: convert, inspect, merge.

    layershare convert SRC --method residual --group-size 2 --rank 64 --out DIR
    layershare inspect DIR [--json]
    layershare merge DIR --out DIR2
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import METHODS
from ..errors import LayershareError
from .common import add_overwrite, add_share_options, out_arg, save_with_tokenizer


def add_commands(sub) -> None:
    """Register convert, inspect and merge on an ``add_subparsers`` object."""
    p = sub.add_parser("convert", help="share the weights of a transformers model's layers")
    p.add_argument("src", help="transformers model directory (config.json + weights), .gguf "
                               "file, CTranslate2 Whisper directory or short name "
                               "(smollm2-135m, minilm-l6, whisper-tiny-en)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--group-size", type=int, default=2, help="layers per sharing group (K)")
    p.add_argument("--rank", type=int, default=64, help="rank of the low-rank factors")
    add_share_options(p)
    p.add_argument("--out", required=True, type=out_arg)
    add_overwrite(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("inspect", help="parameter counts and size of a layershare checkpoint")
    p.add_argument("dir", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("merge", help="write the plain dense model (loads with transformers alone)")
    p.add_argument("dir", type=Path)
    p.add_argument("--out", required=True, type=out_arg)
    add_overwrite(p)
    p.set_defaults(func=cmd_merge)



def cmd_convert(args) -> None:
    from .. import convert, count
    from ..formats.hub import from_local
    from ..formats.pretrained import resolve
    from ..outputs import check_out

    if args.rank < 1:
        raise LayershareError(f"--rank must be >= 1, got {args.rank}")
    check_out(args.out, "checkpoint", sources=[resolve(args.src)], overwrite=args.overwrite)
    model = from_local(args.src)
    convert(model, method=args.method, group_size=args.group_size, rank=args.rank,
            strategy=args.strategy, init=args.init, diag=args.diag,
            matrices=[m for m in args.matrices.split(",") if m], stacks=args.stacks)
    save_with_tokenizer(model, args.src, args.out, args.overwrite)
    print(f"wrote {args.out}\n{count(model)}")


def inspect_report(directory: Path) -> dict:
    from .. import count
    from ..checkpoint import load_structure, read_meta

    meta = read_meta(directory)
    counts = count(load_structure(directory))  # header only: no weight is read
    return {**counts.to_dict(),
            "bytes_on_disk": sum(f.stat().st_size for f in directory.iterdir() if f.is_file()),
            "method": (meta["config"] or {}).get("method", "dense"), "config": meta["config"],
            "base": meta["base"]}


def cmd_inspect(args) -> None:
    report = inspect_report(args.dir)
    if args.json:
        print(json.dumps(report))
        return
    from ..count import ParamCount
    fields = {k: report[k] for k in ParamCount.__dataclass_fields__}
    print(f"{args.dir}: {report['method']}, {report['bytes_on_disk']:,} bytes on disk")
    print(ParamCount(**fields))


def cmd_merge(args) -> None:
    from .. import load, merge, save
    from ..checkpoint import read_meta
    from ..formats.gate import admit
    from ..formats.hub import copy_files, tokenizer_files
    from ..outputs import atomic_directory, check_out

    admit(args.dir)  # the loader gate first: a file linked out of it refused before any work
    transformers = read_meta(args.dir)["base"]["library"] == "transformers"
    check_out(args.out, "dense" if transformers else "checkpoint", sources=[args.dir],
              overwrite=args.overwrite)
    dense = merge(load(args.dir))
    if not transformers:
        save(dense, args.out, overwrite=args.overwrite)
    else:
        def write(tmp: Path):
            dense.save_pretrained(tmp)
            copy_files(tokenizer_files(args.dir), tmp)

        atomic_directory(args.out, write, kind="dense")
    print(f"wrote dense model to {args.out} "
          f"({sum(p.numel() for p in dense.parameters()):,} parameters)")
