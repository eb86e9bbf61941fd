"""``layershare generate``: continue a prompt with any causal language model, and say how fast
and in how much memory.

    layershare generate smollm2-135m --prompt "The jury said" [--max-new-tokens 50]
    layershare generate compact/ --prompt "..."        # a layershare checkpoint
    layershare generate runs/lm --prompt "The jury said"   # a training run directory
    layershare generate deploy/ --prompt "..." [--runtime onnx]  # an ONNX export

MODEL is a layershare compact checkpoint of a transformers model, a transformers model
directory, a .gguf file, a short name (formats/pretrained.py) or a language-model run
directory written by ``layershare train``. Prints the text, then prefill and decode tokens/s
and the process's peak resident memory (see :mod:`layershare.infer`; a run directory's
reference model decodes through its own loop, so only the total time is given there).
An ONNX export (``layershare export --format onnx``) runs greedily with ONNX Runtime alone:
that path imports neither torch nor transformers (layershare/deploy/ort_generate.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import LayershareError
from .common import run_dir, run_tokenizer


def add_commands(sub) -> None:
    """Register ``generate`` on an ``add_subparsers`` object."""
    p = sub.add_parser("generate", help="continue a prompt with a causal language model")
    p.add_argument("model", help="layershare checkpoint, transformers directory, .gguf, short "
                                 "name, or a language-model run directory")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--tokenizer", default=None,
                   help="where the tokenizer is, if not next to the model (e.g. the .gguf a "
                        "checkpoint was converted from)")
    p.add_argument("--cache-merged", action="store_true",
                   help="keep merged residual weights (trades memory for prefill speed)")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0, help="> 0 (with --sample)")
    p.add_argument("--top-k", type=int, default=None, help="1 .. the vocabulary (with --sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runtime", choices=("torch", "onnx"), default=None,
                   help="default: onnx for an ONNX export directory, else torch")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime threads, 1 .. the CPUs of the machine")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args) -> None:
    if not args.prompt.strip():
        raise LayershareError("generate: --prompt is empty")
    from .. import limits

    if args.max_new_tokens < 1:
        raise LayershareError(f"generate: --max-new-tokens must be >= 1, got {args.max_new_tokens}")
    limits.threads(args.threads)
    if args.sample:
        limits.sampling(args.temperature, args.top_k)
    from ..formats.gate import is_run_directory

    export = (Path(args.model) / "onnx.json").is_file()  # no torch import on this path
    runtime = args.runtime or ("onnx" if export else "torch")
    if runtime == "onnx":
        _generate_onnx(args)
    elif export:
        raise LayershareError(f"{args.model} is an ONNX export; run it with --runtime onnx")
    elif is_run_directory(Path(args.model)):
        _generate_run(args)
    else:
        _generate_causal_lm(args)


def _load(args):
    from ..checkpoint import META, load
    from ..formats.hub import auto_tokenizer, from_local
    from ..formats.pretrained import resolve

    path = resolve(args.model)
    if not path.exists():
        raise LayershareError(f"{args.model}: no such file or directory")
    if path.is_dir() and (path / META).is_file():
        model = load(path, cache_merged=args.cache_merged)
    else:
        model = from_local(path)
        if args.cache_merged:
            from ..residual import set_cache_merged
            set_cache_merged(model, True)
    if not hasattr(model, "generate") or not getattr(model, "can_generate", lambda: False)():
        raise LayershareError(f"{args.model}: a {type(model).__name__} cannot generate text "
                              "(not a causal language model)")
    return model, auto_tokenizer(args.tokenizer or path)


def _generate_causal_lm(args) -> None:
    import torch

    from ..infer import peak_rss_bytes, timed_generate

    model, tokenizer = _load(args)
    from .. import limits

    ids = tokenizer(args.prompt, return_tensors="pt")["input_ids"]
    if ids.numel() == 0:
        raise LayershareError("generate: the prompt encodes to no tokens")
    limits.tokens_fit(model, ids, "the prompt")
    limits.fits_positions(model, ids.shape[1] + args.max_new_tokens,
                          "the prompt plus --max-new-tokens")
    if args.sample:
        limits.sampling(args.temperature, args.top_k, limits.vocab_size(model))
    torch.manual_seed(args.seed)
    options = dict(do_sample=args.sample)
    if args.sample:
        options.update(temperature=args.temperature, top_k=args.top_k)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        options["pad_token_id"] = tokenizer.eos_token_id
    out, timing = timed_generate(model, ids, args.max_new_tokens, **options)
    print(tokenizer.decode(out[0], skip_special_tokens=True))
    print(f"{timing.summary()}; peak RSS {peak_rss_bytes() / 2**20:.0f} MiB")


def _generate_onnx(args) -> None:
    """Greedy decoding with ONNX Runtime; no torch import on this path."""
    from ..deploy.ort_generate import OrtCausalLM, eos_ids, load_tokenizer
    from ..measure import peak_rss_bytes

    if args.sample:
        raise LayershareError("generate --runtime onnx decodes greedily; drop --sample")
    model = OrtCausalLM(args.model, threads=args.threads)
    tok = load_tokenizer(args.tokenizer or args.model)
    ids = tok.encode(args.prompt).ids
    out, timing = model.greedy(ids, args.max_new_tokens, eos=eos_ids(args.model))
    print(tok.decode(ids + out, skip_special_tokens=True))
    print(f"{timing.summary()}; peak RSS {peak_rss_bytes() / 2**20:.0f} MiB (ONNX Runtime)")


def _generate_run(args) -> None:
    import torch

    from .. import limits
    from ..data import BOS_ID, EOS_ID
    from ..infer import peak_rss_bytes

    directory = Path(args.model)
    cfg, model, device, autocast, _ = run_dir(directory)
    if cfg.task != "lm":
        raise LayershareError(f"{directory} is a {cfg.task} run, not a language model")
    if not hasattr(model, "generate") or not hasattr(model.config, "max_len"):
        raise LayershareError(f"{directory}: generate supports the reference DecoderLM "
                              "(model.arch=reference); use transformers' generate for gpt2")
    tok = run_tokenizer(directory)
    ids = tok.encode(args.prompt).ids or [EOS_ID]
    limits.tokens_fit(model, torch.tensor(ids), "the prompt")  # a tokenizer larger than the model
    limit = model.config.max_len if model.config.pos == "learned" else None
    new = args.max_new_tokens
    if limit is not None:
        ids = ids[-(limit - 1):]
        new = min(new, limit - len(ids))
    generator = torch.Generator(device=device).manual_seed(args.seed)
    start = time.perf_counter()
    with autocast():
        out = model.generate(torch.tensor([ids], device=device), new, greedy=not args.sample,
                             temperature=args.temperature, top_k=args.top_k, eos_id=EOS_ID,
                             generator=generator)
    elapsed = time.perf_counter() - start
    print(tok.decode([t for t in out[0].tolist() if t not in (EOS_ID, BOS_ID)]))
    print(f"{len(ids)} prompt + {out.shape[1] - len(ids)} new tokens in {elapsed * 1e3:.0f} ms; "
          f"peak RSS {peak_rss_bytes() / 2**20:.0f} MiB")
