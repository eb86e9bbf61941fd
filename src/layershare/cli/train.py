"""Verbs for training from scratch and using a run directory.

    layershare train --config configs/lm-brown-residual.yaml [--set train.steps=200] --out runs/res
    torchrun --nproc_per_node=2 -m layershare train --config ... --out ...
    layershare eval runs/res [--split test]
    layershare translate runs/mt < de.txt > en.txt
    layershare generate runs/lm --prompt "The jury said"

``add_commands(subparsers)`` adds them; every parser sets ``func``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import LayershareError
from .common import out_arg


def add_commands(sub) -> None:
    """Register train, eval, translate and generate on an ``add_subparsers`` object."""
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

    p = sub.add_parser("eval", help="evaluate a trained run directory on a split")
    p.add_argument("dir", type=Path, help="a run directory written by train")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("translate", help="translate stdin (one sentence a line) to stdout")
    p.add_argument("dir", type=Path, help="a translation run directory")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the run's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("generate", help="continue a prompt with a trained language model")
    p.add_argument("dir", type=Path, help="a language-model run directory")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_generate)


def cmd_train(args) -> None:
    from ..train import describe, load_config, train

    if args.help_config:
        print("\n".join(describe()))
        return
    if args.out is None:
        raise LayershareError("train: --out DIR is required")
    cfg = load_config(args.config, args.overrides)
    train(cfg, args.out, progress=not args.quiet, overwrite=args.overwrite)


def run_dir(directory: Path):
    """(config, model, task, device, autocast) of a finished run directory."""
    from .. import load
    from ..train.config import read_run_config
    from ..train.datasets import build_task
    from ..train.trainer import autocast_for, pick_device

    config_path, model_dir = directory / "config.yaml", directory / "model"
    if not config_path.is_file() or not model_dir.is_dir():
        raise LayershareError(f"{directory}: not a finished run (needs config.yaml and model/)")
    cfg = read_run_config(config_path)
    device = pick_device(cfg)
    model = load(model_dir).to(device).eval()
    return cfg, model, device, autocast_for(cfg, device), build_task


def _tokenizer(directory: Path):
    from ..data import load_tokenizer
    return load_tokenizer(directory / "model" / "tokenizer.json"
                          if (directory / "model" / "tokenizer.json").is_file()
                          else directory / "tokenizer.json")


def cmd_eval(args) -> None:
    from ..train.evaluate import split_metrics

    cfg, model, device, autocast, build_task = run_dir(args.dir)
    task = build_task(cfg, args.dir, progress=False, setup=False)
    result = split_metrics(task, model, args.split, device, args.dir, autocast)
    print(json.dumps(result, indent=2))


def cmd_translate(args) -> None:
    from ..train.evaluate import translate_lines

    cfg, model, device, autocast, _ = run_dir(args.dir)
    if cfg.task != "translation":
        raise LayershareError(f"{args.dir} is a {cfg.task} run, not a translation one")
    lines = [line.rstrip("\r\n") for line in sys.stdin]
    out = translate_lines(model, _tokenizer(args.dir), lines, device,
                          args.beam or cfg.eval.beam_size, cfg.eval.max_len, args.batch_size,
                          cfg.train.seq_len, autocast)
    sys.stdout.write("".join(line + "\n" for line in out))


def cmd_generate(args) -> None:
    import torch

    from ..data import BOS_ID, EOS_ID

    cfg, model, device, autocast, _ = run_dir(args.dir)
    if cfg.task != "lm":
        raise LayershareError(f"{args.dir} is a {cfg.task} run, not a language model")
    if not hasattr(model, "generate") or not hasattr(model.config, "max_len"):
        raise LayershareError(f"{args.dir}: generate supports the reference DecoderLM "
                              "(model.arch=reference); use transformers' generate for gpt2")
    tok = _tokenizer(args.dir)
    ids = tok.encode(args.prompt).ids or [EOS_ID]  # an empty prompt starts a new sentence
    limit = model.config.max_len if model.config.pos == "learned" else None
    new = args.max_new_tokens
    if limit is not None:
        ids = ids[-(limit - 1):]
        new = min(new, limit - len(ids))
    generator = torch.Generator(device=device).manual_seed(args.seed)
    with autocast():
        out = model.generate(torch.tensor([ids], device=device), new, greedy=not args.sample,
                             temperature=args.temperature, top_k=args.top_k, eos_id=EOS_ID,
                             generator=generator)
    text = tok.decode([t for t in out[0].tolist() if t not in (EOS_ID, BOS_ID)])
    print(text)
