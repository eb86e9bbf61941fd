"""Verbs for training from scratch and using a run directory.

    layershare train --config configs/lm-brown-residual.yaml [--set train.steps=200] --out runs/res
    torchrun --nproc_per_node=2 -m layershare train --config ... --out ...
    layershare translate runs/mt < de.txt > en.txt
    layershare consolidate runs/res/checkpoints/last --out ckpt   # an FSDP run's shards

``add_commands(subparsers)`` adds them; every parser sets ``func``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import LayershareError
from .common import out_arg, run_dir, run_tokenizer


def add_commands(sub) -> None:
    """Register train and translate on an ``add_subparsers`` object."""
    p = sub.add_parser("train", help="train a model from scratch from a YAML config")
    p.add_argument("--config", type=Path, help="YAML run config (see configs/); default: defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=200 (repeatable)")
    p.add_argument("--out", type=out_arg, help="run directory (re-run the same command to resume)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the run (or other layershare output) in --out and start afresh")
    p.add_argument("--help-config", action="store_true", help="list every config key and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("consolidate", help="an FSDP run's sharded checkpoint (train.parallel="
                       "fsdp) as one compact checkpoint (layershare.load)")
    p.add_argument("checkpoint", type=Path, help="RUN/checkpoints/last of an FSDP run")
    p.add_argument("--out", type=out_arg, required=True, help="checkpoint directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace another layershare output")
    p.set_defaults(func=cmd_consolidate)

    p = sub.add_parser("translate", help="translate stdin (one sentence a line) to stdout")
    p.add_argument("dir", type=Path, help="a translation run directory")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the run's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_translate)


def cmd_train(args) -> None:
    from ..train import describe, load_config, train

    if args.help_config:
        print("\n".join(describe()))
        return
    if args.out is None:
        raise LayershareError("train: --out DIR is required")
    cfg = load_config(args.config, args.overrides)
    train(cfg, args.out, progress=not args.quiet, overwrite=args.overwrite)


def cmd_consolidate(args) -> None:
    from ..train.fsdp import consolidate

    print(consolidate(args.checkpoint, args.out, overwrite=args.overwrite))


def cmd_translate(args) -> None:
    from .. import limits
    from ..train.decode import translate_lines

    limits.at_least("--batch-size", args.batch_size)
    if args.beam is not None:
        limits.at_least("--beam", args.beam)
    cfg, model, device, autocast, _ = run_dir(args.dir)
    if cfg.task != "translation":
        raise LayershareError(f"{args.dir} is a {cfg.task} run, not a translation one")
    lines = [line.rstrip("\r\n") for line in sys.stdin]
    out = translate_lines(model, run_tokenizer(args.dir), lines, device,
                          args.beam or cfg.eval.beam_size, cfg.eval.max_len, args.batch_size,
                          cfg.train.seq_len, autocast)
    sys.stdout.write("".join(line + "\n" for line in out))
