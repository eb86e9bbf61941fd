"""``layershare distill``: win back a compressed model's quality from its original.

    layershare distill small/ --teacher smollm2-135m --data brown --steps 300 --out dist/
    layershare distill small/ --teacher SRC --data text corpus.txt --trainable all \\
        --loss kl+lm --temperature 2 --out dist/
    torchrun --nproc_per_node=2 -m layershare distill ...      # DDP
    torchrun --nproc_per_node=2 -m layershare distill ... --parallel fsdp   # FSDP2

A run of the ordinary trainer (progress bar, metrics.jsonl, loss.png, best/last checkpoints;
re-run the same command to resume after a kill). OUT/model is a layershare checkpoint,
OUT/results.json holds perplexity (encoders: embedding cosine) before and after.
"""

from __future__ import annotations

import argparse

from ..errors import LayershareError
from .common import out_arg


def add_commands(sub) -> None:
    p = sub.add_parser("distill", help="train a compressed checkpoint towards its original")
    p.add_argument("student", help="layershare checkpoint to train (from compress or convert)")
    p.add_argument("--teacher", required=True,
                   help="the dense original: transformers directory, .gguf or short name")
    p.add_argument("--data", nargs="+", default=["brown"], metavar="NAME|FILE",
                   help="brown (its train split), a text file (split 90/5/5 by line order), or "
                        "espeak-en for a Whisper student (docs/cli.md, naming data; the older "
                        "form 'text FILE' still works)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seq-len", type=int, default=256, help="tokens per training window")
    p.add_argument("--batch-size", type=int, default=8, help="global batch, in windows")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (cosine)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default steps/10)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--trainable", choices=("lowrank", "all"), default="lowrank")
    p.add_argument("--loss", choices=("kl", "kl+lm", "lm"), default="kl",
                   help="kl: distillation; kl+lm: plus the LM loss; lm: fine-tuning alone")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--hidden", choices=("last", "all"), default="last",
                   help="encoders: MSE on the last hidden state or on every layer's")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-batches", type=int, default=4, help="valid batches per evaluation")
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--eval-windows", type=int, default=16,
                   help="final test: the first N windows of the test split (0 = all)")
    p.add_argument("--eval-seq-len", type=int, default=512, help="final test: window length")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="final test: also measure the student before and the teacher")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--parallel", choices=("ddp", "fsdp"), default="ddp",
                   help="under torchrun: ddp (a full student per rank) or fsdp (FSDP2: the "
                        "student's parameters, gradients and AdamW state sharded)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other run-config key (layershare train --help-config)")
    p.add_argument("--out", required=True, type=out_arg,
                   help="run directory (re-run the same command to resume)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the run (or other layershare output) in --out and start afresh")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(func=cmd_distill)


def data_argument(words: list[str]) -> str:
    """``brown`` | ``espeak-en`` | ``text FILE`` (or a bare FILE) -> distill()'s ``data``."""
    if len(words) == 2 and words[0] == "text":
        words = words[1:]
    if len(words) != 1 or words[0] == "text":
        raise LayershareError(f"--data takes brown, espeak-en or 'text FILE', got "
                              f"{' '.join(words)!r}")
    return words[0]


def cmd_distill(args) -> None:
    from ..train.distill_api import distill

    distill(args.student, args.teacher, args.out, data=data_argument(args.data),
            steps=args.steps, seq_len=args.seq_len, batch_size=args.batch_size,
            grad_accum=args.grad_accum, lr=args.lr, warmup=args.warmup,
            weight_decay=args.weight_decay, trainable=args.trainable, loss=args.loss,
            temperature=args.temperature, hidden=args.hidden, eval_every=args.eval_every,
            eval_batches=args.eval_batches, save_every=args.save_every,
            eval_windows=args.eval_windows, eval_seq_len=args.eval_seq_len,
            baseline=args.baseline, seed=args.seed, device=args.device,
            parallel=args.parallel, settings=args.overrides, progress=not args.quiet,
            overwrite=args.overwrite)
