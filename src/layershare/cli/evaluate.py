"""``layershare eval``: perplexity of any causal LM, fidelity to the original, run directories.

    layershare eval smollm2-135m --data brown [--split test] [--seq-len 512] [--windows 16]
    layershare eval small/ --data brown --reference smollm2-135m      # + KL and top-1
    layershare eval runs/res [--split test]                           # a training run
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LayershareError
from .common import load_model, run_dir


def add_commands(sub) -> None:
    p = sub.add_parser("eval", help="perplexity (and fidelity) of a model, or a run's metrics")
    p.add_argument("model", help="layershare checkpoint, transformers directory, .gguf, short "
                                 "name, or a training run directory")
    p.add_argument("--data", default=None, metavar="NAME|FILE",
                   help="brown or a text file (docs/cli.md, naming data; default for a run "
                        "directory: its own data)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--seq-len", type=int, default=512,
                   help="tokens per window (2 .. the model's learned positions)")
    p.add_argument("--windows", type=int, default=16,
                   help="the first N windows of the split (0 = all)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--reference", default=None,
                   help="the original model: also report KL(original || model) and top-1 agreement")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trust-config", action="store_true",
                   help="a run directory you made: read the data files and data.dir its "
                        "config.yaml names even outside it (by default a run directory is "
                        "read only inside itself, and a recipe from your own data store)")
    p.add_argument("--int8", action="store_true",
                   help="weight-only int8 first (per-row symmetric, shared tensors once: "
                        "deploy/int8.py); reports the int8 bytes beside the figures")
    p.set_defaults(func=cmd_eval)


def _int8(model, args) -> dict:
    """With --int8: quantize ``model`` in place; the weight bytes either way."""
    from ..deploy.int8 import fp32_bytes, int8_bytes, quantize_int8_

    sizes = {"weights_bytes_fp32": fp32_bytes(model), "weights_bytes_int8": int8_bytes(model)}
    if args.int8:
        quantize_int8_(model)
    return {"int8": args.int8, **sizes}


def cmd_eval(args) -> None:
    path = Path(args.model)
    if args.data is None:
        from ..formats.gate import is_run_directory

        if not is_run_directory(path):
            raise LayershareError(f"{args.model}: give --data brown|FILE "
                                  "(it is not a run directory)")
        from ..train.evaluate import split_metrics

        cfg, model, device, autocast, build_task = run_dir(path, read_data=True,
                                                           trust_config=args.trust_config)
        task = build_task(cfg, path, progress=False, setup=False)
        sizes = _int8(model, args)
        out = None if args.int8 else path  # int8 hypotheses never replace the run's own
        print(json.dumps({**split_metrics(task, model, args.split, device, out, autocast),
                          **sizes}, indent=2))
        return
    from .. import limits
    from ..data.windows import read_text, token_windows
    from ..evaluate.perplexity import lm_quality, protocol

    if args.windows < 0 or args.batch_size < 1:
        raise LayershareError("--windows must be >= 0 and --batch-size >= 1")
    limits.at_least("--seq-len", args.seq_len, 2)
    model, tokenizer, _ = load_model(args.model)
    limits.fits_positions(model, args.seq_len, "--seq-len")
    reference = load_model(args.reference)[0] if args.reference else None
    if reference is not None:
        limits.same_vocab(model, reference, f"--reference {args.reference}")
        limits.fits_positions(reference, args.seq_len, "--seq-len (for the reference)")
    windows = token_windows(tokenizer, read_text(args.data, args.split), args.seq_len,
                            args.windows or None, what=f"{args.data} {args.split}")
    limits.tokens_fit(model, windows, f"{args.data} {args.split}")
    sizes = _int8(model, args)
    result = lm_quality(model, windows, args.batch_size, reference, progress=not args.json)
    result.update(sizes)
    result["protocol"] = protocol(args.data, args.split, result)
    if args.json:
        print(json.dumps(result))
        return
    line = f"perplexity {result['perplexity']:.3f}"
    if args.int8:
        line += f" (int8 weights, {result['weights_bytes_int8'] / 2**20:.1f} MiB)"
    if reference is not None:
        line += (f", KL(reference || model) {result['kl']:.4f} nats/token, "
                 f"top-1 agreement {result['top1']:.4f}")
    print(f"{line}\n({result['protocol']}, {result['seconds']:.1f} s)")
