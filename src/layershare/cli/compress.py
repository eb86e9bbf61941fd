"""``layershare compress``: a pretrained model made smaller, fitted to calibration data.

    layershare compress smollm2-135m --method lowrank --group-size 1 --keep 0.6 --out small/
    layershare compress SRC --method residual --group-size 2 --keep 0.8 --calib brown \\
        --calib-tokens 16384 --seq-len 256 --out DIR
    layershare compress whisper-tiny-en --stacks encoder --method residual --group-size 4 \\
        --keep 0.34 --calib espeak-en --calib-tokens 96000 --out DIR

A Whisper model calibrates on speech (compress/speech.py): log-mel features of espeak-en
train utterances, ``--calib-tokens`` counted in encoder frames (1500 per 30 s clip).
"""

from __future__ import annotations

import argparse

from ..config import METHODS
from .common import add_overwrite, add_share_options, out_arg, save_with_tokenizer


def _keep(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--keep takes a fraction, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--keep must lie strictly between 0 and 1, got {text}")
    return value


def _group_size(args) -> int:
    """The default K depends on the method (benchmarks/results/pretrained.md)."""
    if args.group_size is not None:
        return args.group_size
    return 1 if args.method == "lowrank" else 2


def add_commands(sub) -> None:
    p = sub.add_parser("compress", help="compress a pretrained model, calibrated on real text")
    p.add_argument("src", help="transformers directory, .gguf file or short name (smollm2-135m, "
                               "minilm-l6)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--group-size", type=int, default=None,
                   help="layers per sharing group (K); default 1 for lowrank (per-layer SVD-LLM, "
                        "which beat Basis Sharing K=2 at every budget measured) and 2 otherwise")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--rank", type=int, help="one rank for every matrix")
    size.add_argument("--keep", type=_keep, help="fraction of the stack's matrix parameters kept")
    p.add_argument("--allocate", choices=("uniform", "spectrum"), default="uniform",
                   help="how --keep is spread: the same fraction per matrix, "
                        "or by whitened spectrum")
    p.add_argument("--data", "--calib", dest="calib", default=None, metavar="NAME|FILE|none",
                   help="calibration data (docs/cli.md, naming data): text models brown (its "
                        "valid split, the default) or a text file; Whisper models espeak-en "
                        "(its train split, the default); none: the data-free fit")
    p.add_argument("--calib-tokens", type=int, default=16384,
                   help="calibration tokens; for a Whisper model encoder frames, 1500 per "
                        "utterance (each padded to 30 s): ceil(N/1500) utterances evenly "
                        "spaced over the train split")
    p.add_argument("--data-dir", default=None,
                   help="where speech data is prepared (default $LAYERSHARE_DATA or ./data)")
    p.add_argument("--seq-len", type=int, default=256,
                   help="tokens per calibration window (2 .. the model's learned positions)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="calibration windows per forward (>= 1)")
    p.add_argument("--sequential", action=argparse.BooleanOptionalAction, default=True,
                   help="fit each block on the outputs of the already compressed blocks")
    p.add_argument("--target", choices=("local", "original"), default="local",
                   help="sequential fits: match the original model's outputs (original) or each "
                        "matrix's own response to its compressed inputs (local, SVD-LLM)")
    add_share_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="format of the stored weights (bf16 halves the file; fits are fp32)")
    p.add_argument("--out", required=True, type=out_arg)
    add_overwrite(p)
    p.set_defaults(func=cmd_compress)


def cmd_compress(args) -> None:
    from .. import count
    from ..compress import compress
    from ..formats.pretrained import resolve
    from ..outputs import check_out

    check_out(args.out, "checkpoint", sources=[resolve(args.src)], overwrite=args.overwrite)
    result = compress(args.src, calib=args.calib, calib_tokens=args.calib_tokens,
                      seq_len=args.seq_len, batch_size=args.batch_size, data_dir=args.data_dir,
                      method=args.method, keep=args.keep, rank=args.rank,
                      group_size=_group_size(args), allocate=args.allocate,
                      sequential=args.sequential, target=args.target, progress=not args.quiet,
                      strategy=args.strategy, init=args.init, diag=args.diag,
                      matrices=[m for m in args.matrices.split(",") if m], stacks=args.stacks)
    save_with_tokenizer(result.model, args.src, args.out, args.overwrite, dtype=args.dtype)
    if result.errors:
        print(f"{'matrix':<24}{'rel. whitened error':>20}{'max':>10}")
        for name, mean, worst in result.error_table():
            print(f"{name:<24}{mean:>20.4f}{worst:>10.4f}")
    print(f"wrote {args.out} in {result.seconds:.1f} s (calibration: "
          f"{result.calib_description})")
    print(f"matrix parameters kept: {result.keep:.4f}"
          + (f" (asked {args.keep:g})" if args.keep else ""))
    print(count(result.model))
