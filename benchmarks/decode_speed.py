"""Decoding speed of translation and summarisation models, side by side (LightFormer's 2.3x).

    benchmarks/quiet.sh python benchmarks/decode_speed.py runs/mt/dense runs/mt/lightformer \\
        --out benchmarks/results/decode-speed-mt --profile

Every model (a run directory of the ``translation`` or ``summarisation`` task, or its
``model/`` checkpoint beside a ``tokenizer.json``) decodes the same sources -- the first
``--sentences`` of the test split of the first run's recipe, or ``--data FILE`` with one
source per line -- sorted by length and batched as the trainer's test decoding batches them
(``translate_lines``), for every combination of search (greedy, beam 4), batch size (1, 64)
and torch threads (1, 2). Models alternate round by round (``--rounds``, the median kept), so
the drift of a shared machine hits them alike; run the whole under ``benchmarks/quiet.sh``.
Speed-ups are to the first model (give the dense source first). Hypotheses differ in length
between models, so tokens/s counts generated tokens (eos included) and the time per
generated token stands beside sentences/s.

``--profile`` splits one decode of the first and of the last model (beam 4, batch 64, one
thread) into where the time goes, by forward hooks that time each module's *self* time
(its children's time subtracted) on the synchronous CPU path:

* projections: the Linear maps of attention and feed-forward (q, k, v, o, up, down), whatever
  layershare made of them (low-rank, residual, shared bases);
* attention core: the attention modules' own work (scaled-dot-product attention, head
  reshapes, rotary positions, KV-cache concatenation);
* output projection: the tied embedding's scores over the vocabulary;
* norms, activations, embeddings: the rest of the model's modules;
* search and Python: the remainder of the wall time (log-softmax and top-k of the search,
  beam bookkeeping, cache reordering, the interpreter). The hooks themselves add a little
  to every category; compare categories, not the profile's total with the timed runs.

``--no-eos`` makes every hypothesis run to the length limit (the ids of bos stand in for
eos, and search never generates bos): models with untrained weights, built only to time
a size not trained here, then decode the same number of tokens, and their tokens/s compare.

Writes ``OUT.json``, ``OUT.md`` (table) and ``OUT.png`` (speed-up per combination).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

CATEGORIES = ("projections", "attention core", "output projection",
              "norms, activations, embeddings", "search and Python")


# -- inputs ------------------------------------------------------------------------------------
def load_model(path: Path):
    """(model, tokenizer, run config or None) of a run directory or a checkpoint."""
    import yaml

    import layershare
    from layershare.data.tokenizer import load_tokenizer

    run = path if (path / "model").is_dir() else None
    checkpoint = path / "model" if run else path
    config = yaml.safe_load((run / "config.yaml").read_text()) if run else None
    tok_dir = run if run else (path if (path / "tokenizer.json").is_file() else path.parent)
    model = layershare.load(checkpoint).eval()
    if not hasattr(model, "translate"):
        raise SystemExit(f"{path}: not a translation or summarisation model")
    return model, load_tokenizer(tok_dir), config


def sources(data: str | None, config: dict | None, limit: int) -> tuple[list[str], str]:
    """The first ``limit`` sources, and where they came from."""
    if data and Path(data).is_file():
        from layershare.data.local import iter_user_lines
        lines = []
        for line in iter_user_lines(Path(data)):
            if line.strip():
                lines.append(line.strip())
            if len(lines) == limit:
                break
        return lines, data
    from layershare.data import load_splits
    name = data or (config or {}).get("data", {}).get("name")
    if not name:
        raise SystemExit("say which sources to decode: --data NAME|FILE")
    directory = (config or {}).get("data", {}).get("dir")
    splits = load_splits(name, Path(directory) if directory else None, progress=False)
    return [s for s, _ in splits["test"][:limit]], f"{name} test split"


def max_len_for(config: dict | None, tok) -> int:
    """Where the trainer's test decoding of this run stops (train/tasks.py): ``eval.max_len``
    if set; else 0 (the model's rule, 2 x source + 10) for translation, and for summarisation
    the longest training summary as the task cuts it (``train.seq_len - 2`` tokens), + eos."""
    from layershare.train.sections import TASKS

    config = config or {}
    if config.get("eval", {}).get("max_len"):
        return int(config["eval"]["max_len"])
    name = config.get("data", {}).get("name")
    if TASKS.get(name) != "summarisation":
        return 0
    from layershare.data import load_splits
    directory = config["data"].get("dir")
    splits = load_splits(name, Path(directory) if directory else None, progress=False)
    longest = max(len(e.ids) for e in tok.encode_batch([t for _, t in splits["train"]]))
    return min(longest, config["train"]["seq_len"] - 2) + 1


def max_src(model, config: dict | None, asked: int) -> int:
    """Source tokens kept: the run's ``train.seq_len`` (as its test decoding cuts them), else
    ``asked``; never more than the model's learned positions hold."""
    keep = (config or {}).get("train", {}).get("seq_len") or asked
    if getattr(model.config, "pos", "learned") == "learned":
        keep = min(keep, model.config.max_len)
    return keep


def batches(tok, lines: list[str], batch_size: int, max_src: int) -> list[torch.Tensor]:
    """The sources as the trainer's test decoding batches them (sorted by length)."""
    from layershare.train.decode import source_batches

    return [src for _, src in source_batches(tok, lines, batch_size, max_src)]


# -- timing ------------------------------------------------------------------------------------
@torch.inference_mode()
def decode(model, inputs: list[torch.Tensor], beam: int, max_len: int) -> tuple[float, int]:
    """Wall seconds and generated tokens (eos included, pad not) of decoding ``inputs``."""
    from layershare.data import PAD_ID

    start, tokens = time.perf_counter(), 0
    for src in inputs:
        hyp = model.translate(src, beam_size=beam, max_len=max_len or None)
        tokens += int((hyp != PAD_ID).sum())
    return time.perf_counter() - start, tokens


def measure(models: list[dict], args) -> list[dict]:
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for beam in args.beams:
            for batch in args.batch_sizes:
                inputs = [batches(m["tok"], m["lines"], batch, m["max_src"]) for m in models]
                for m, x in zip(models, inputs):  # warm-up: allocator, thread pool
                    decode(m["model"], x[:1], beam, m["max_len"])
                times = defaultdict(list)
                for _ in range(args.rounds):
                    for i, (m, x) in enumerate(zip(models, inputs)):
                        seconds, tokens = decode(m["model"], x, beam, m["max_len"])
                        times[i].append((seconds, tokens))
                for i, m in enumerate(models):
                    seconds = statistics.median(s for s, _ in times[i])
                    tokens = times[i][0][1]
                    rows.append({"model": m["name"], "threads": threads, "beam": beam,
                                 "batch": batch, "sentences": len(m["lines"]),
                                 "seconds": seconds, "generated_tokens": tokens,
                                 "sentences_per_s": len(m["lines"]) / seconds,
                                 "tokens_per_s": tokens / seconds,
                                 "ms_per_token": 1e3 * seconds / tokens})
                base = rows[-len(models)]
                for r in rows[-len(models):]:
                    r["speedup_tokens"] = r["tokens_per_s"] / base["tokens_per_s"]
                    r["speedup_sentences"] = r["sentences_per_s"] / base["sentences_per_s"]
                    print(f"threads {threads} beam {beam} batch {batch:>3} {r['model']:>24}: "
                          f"{r['sentences_per_s']:8.1f} sent/s {r['tokens_per_s']:9.0f} tok/s "
                          f"x{r['speedup_tokens']:.2f}", flush=True)
    return rows


# -- profile -----------------------------------------------------------------------------------
class SelfTimes:
    """Self time per category of the modules it watches (forward pre/post hooks)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.stack: list[list] = []  # [category, start, children's time]
        self.undo: list = []  # what close() calls

    def enter(self, category: str) -> None:
        self.stack.append([category, time.perf_counter(), 0.0])

    def leave(self) -> None:
        category, start, children = self.stack.pop()
        total = time.perf_counter() - start
        self.seconds[category] += total - children
        if self.stack:
            self.stack[-1][2] += total

    def watch(self, module, category: str) -> None:
        self.undo.append(module.register_forward_pre_hook(lambda *_: self.enter(category)).remove)
        self.undo.append(module.register_forward_hook(lambda *_: self.leave()).remove)

    def watch_model(self, model) -> None:
        from layershare.models.blocks import Attention, FeedForward

        for module in model.modules():
            if isinstance(module, Attention):
                self.watch(module, "attention core")
            elif isinstance(module, FeedForward):
                self.watch(module, "norms, activations, embeddings")
            else:
                continue
            for child in module.children():  # q/k/v/o_proj, up/down: whatever they became
                self.watch(child, "projections")
        for module in (model.embed, model.encoder, model.decoder, *model.encoder.layers,
                       *model.decoder.layers):
            self.watch(module, "norms, activations, embeddings")
        original = model.embed.logits

        def logits(x):  # the tied projection is a method, not a module: wrap it
            self.enter("output projection")
            try:
                return original(x)
            finally:
                self.leave()
        model.embed.logits = logits
        self.undo.append(lambda: delattr(model.embed, "logits"))

    def close(self) -> None:
        for undo in self.undo:
            undo()


def profile(m: dict, beam: int = 4, batch: int = 64) -> dict:
    torch.set_num_threads(1)
    inputs = batches(m["tok"], m["lines"], batch, m["max_src"])
    decode(m["model"], inputs[:1], beam, m["max_len"])
    timer = SelfTimes()
    try:
        timer.watch_model(m["model"])
        wall, _ = decode(m["model"], inputs, beam, m["max_len"])
    finally:
        timer.close()
    parts = dict(timer.seconds)
    parts["search and Python"] = wall - sum(parts.values())
    return {"model": m["name"], "beam": beam, "batch": batch, "threads": 1,
            "wall_s": wall, "share": {c: parts.get(c, 0.0) / wall for c in CATEGORIES}}


# -- report ------------------------------------------------------------------------------------
def table(rows: list[dict], profiles: list[dict]) -> str:
    lines = ["| search | batch | threads | model | sentences/s | tokens/s | ms / token "
             "| x tokens/s | x sentences/s |", "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        search = "greedy" if r["beam"] == 1 else f"beam {r['beam']}"
        lines.append(f"| {search} | {r['batch']} | {r['threads']} | {r['model']} | "
                     f"{r['sentences_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
                     f"{r['ms_per_token']:.3f} | {r['speedup_tokens']:.2f} | "
                     f"{r['speedup_sentences']:.2f} |")
    if profiles:
        lines += ["", "Where the time goes (share of the wall time, one thread, hooks "
                  "included):", "", "| model | " + " | ".join(CATEGORIES) + " |",
                  "|---|" + "---:|" * len(CATEGORIES)]
        for p in profiles:
            lines.append(f"| {p['model']} (beam {p['beam']}, batch {p['batch']}) | " +
                         " | ".join(f"{100 * p['share'][c]:.0f}%" for c in CATEGORIES) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    combos = sorted({(r["beam"], r["batch"], r["threads"]) for r in rows})
    names = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(combos)), 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ys = [next(r["speedup_tokens"] for r in rows if r["model"] == name
                   and (r["beam"], r["batch"], r["threads"]) == c) for c in combos]
        ax.bar([j + i * width for j in range(len(combos))], ys, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(combos))])
    ax.set_xticklabels([f"{'greedy' if b == 1 else f'beam {b}'}\nbatch {n}, {t} thr"
                        for b, n, t in combos], fontsize=8)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel(f"generated tokens/s relative to {names[0]}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", type=Path, help="run directories or checkpoints; "
                   "the first is the reference (the dense source)")
    p.add_argument("--data", default=None, help="recipe name or a text file of sources "
                   "(default: the first run's recipe, test split)")
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-src", type=int, default=128, help="source tokens kept (seq_len)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--no-eos", action="store_true",
                   help="never stop at eos: every hypothesis runs to the length limit, so "
                        "models whose weights differ (untrained ones: speed at a size not "
                        "trained here) decode the same number of tokens")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/decode-speed"))
    args = p.parse_args(argv)
    if min(args.sentences, args.rounds, *args.beams, *args.batch_sizes, *args.threads) < 1:
        raise SystemExit("--sentences, --rounds, --beams, --batch-sizes, --threads must be >= 1")
    threads = torch.get_num_threads()
    try:
        run(args, argv if argv is not None else sys.argv[1:])
    finally:
        torch.set_num_threads(threads)  # measure() and profile() change it


def run(args, argv: list[str]) -> None:
    models, max_lens = [], {}
    for path in args.models:
        model, tok, config = load_model(path)
        if args.no_eos:  # search masks bos, so bos's id as eos is never generated
            model.config.eos_id = model.config.bos_id
        if not models:  # every model decodes the first one's sources
            lines, origin = sources(args.data, config, args.sentences)
        c = config or {}
        key = (json.dumps([c.get("data"), c.get("train", {}).get("seq_len"),
                           c.get("eval", {}).get("max_len")], default=str), tok.to_str())
        if key not in max_lens:  # the training summaries tokenized once, not once a model
            max_lens[key] = max_len_for(config, tok)
        models.append({"name": path.name if path.name != "model" else path.parent.name,
                       "model": model, "tok": tok, "config": config, "lines": lines,
                       "max_src": max_src(model, config, args.max_src),
                       "max_len": max_lens[key]})
    print(f"{len(lines)} sources from {origin}", flush=True)
    rows = measure(models, args)
    chosen = [models[0]] + ([models[-1]] if len(models) > 1 else [])
    profiles = [profile(m) for m in chosen] if args.profile else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"sources": origin, "rows": rows, "profiles": profiles,
         "command": "python benchmarks/decode_speed.py " + " ".join(map(str, argv))},
        indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table(rows, profiles))
    plot(rows, args.out.with_suffix(".png"))
    print(table(rows, profiles))


if __name__ == "__main__":
    main()
