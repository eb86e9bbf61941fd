"""The ``layershare`` command line.

    layershare convert SRC --method residual --group-size 2 --rank 64 --out DIR
    layershare inspect DIR [--json]
    layershare merge DIR --out DIR2
    layershare data prepare brown | train --config FILE --out DIR | eval | translate | generate

A user mistake prints one line on stderr and exits with status 2; no output directory is
left behind (outputs are written to a temporary directory and renamed into place).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .arch import KINDS
from .config import METHODS
from .errors import LayershareError
from .plan import STRATEGIES
from .svd import INITS


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise LayershareError(message)


def _int_list_or_name(text: str):
    if text in STRATEGIES:
        return text
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a strategy ({', '.join(STRATEGIES)}) nor a list of group ids "
            "like 0,0,1,1") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="layershare", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("convert", help="share the weights of a transformers model's layers")
    p.add_argument("src", help="transformers model directory (config.json + weights) or .gguf file")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--group-size", type=int, default=2, help="layers per sharing group (K)")
    p.add_argument("--rank", type=int, default=64, help="rank of the low-rank factors")
    p.add_argument("--strategy", type=_int_list_or_name, default="sequence",
                   help=f"{' | '.join(STRATEGIES)} or explicit group ids, e.g. 0,0,1,1")
    p.add_argument("--init", choices=[i for i in INITS if i != "scratch"], default="mean")
    p.add_argument("--diag", action=argparse.BooleanOptionalAction, default=None,
                   help="per-layer diagonal (default: on for residual, off for lowrank)")
    p.add_argument("--matrices", default=",".join(KINDS),
                   help=f"comma-separated subset of {','.join(KINDS)}")
    p.add_argument("--out", required=True, type=Path)

    p = sub.add_parser("inspect", help="parameter counts and size of a layershare checkpoint")
    p.add_argument("dir", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("merge", help="write the plain dense model (loads with transformers alone)")
    p.add_argument("dir", type=Path)
    p.add_argument("--out", required=True, type=Path)

    from .cli_train import add_commands  # train, eval, translate, generate, data prepare
    add_commands(sub)
    return parser


def cmd_convert(args) -> None:
    from . import convert, count, save
    from .hub import from_local, tokenizer_files

    if args.rank < 1:
        raise LayershareError(f"--rank must be >= 1, got {args.rank}")
    model = from_local(args.src)
    convert(model, method=args.method, group_size=args.group_size, rank=args.rank,
            strategy=args.strategy, init=args.init, diag=args.diag,
            matrices=[m for m in args.matrices.split(",") if m])
    save(model, args.out, extra_files=tokenizer_files(args.src))
    print(f"wrote {args.out}\n{count(model)}")


def inspect_report(directory: Path) -> dict:
    from . import count
    from .checkpoint import load_structure, read_meta

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
    from .count import ParamCount
    fields = {k: report[k] for k in ParamCount.__dataclass_fields__}
    print(f"{args.dir}: {report['method']}, {report['bytes_on_disk']:,} bytes on disk")
    print(ParamCount(**fields))


def cmd_merge(args) -> None:
    from . import load, merge, save
    from .checkpoint import atomic_directory, read_meta
    from .hub import copy_files, tokenizer_files

    if read_meta(args.dir)["base"]["library"] != "transformers":
        dense = merge(load(args.dir))
        save(dense, args.out)
    else:
        dense = merge(load(args.dir))

        def write(tmp: Path):
            dense.save_pretrained(tmp)
            copy_files(tokenizer_files(args.dir), tmp)

        atomic_directory(args.out, write)
    print(f"wrote dense model to {args.out} ({sum(p.numel() for p in dense.parameters()):,} parameters)")


COMMANDS = {"convert": cmd_convert, "inspect": cmd_inspect, "merge": cmd_merge}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from .hub import quiet_transformers
        quiet_transformers()
        (getattr(args, "func", None) or COMMANDS[args.command])(args)
    except LayershareError as exc:
        print(f"layershare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layershare: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
