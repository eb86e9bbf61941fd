"""Issue 16's DLT benchmark: eight runs side by side, the synthetic checks, the memory table.

1. **Training runs** (Brown, same steps for each, constant learning rate after warm-up,
   epsilon at its floor after 30% of the run, best validation checkpoint tested once):
   dense full depth; dense with k layers; static tying with k parameter sets; DLT with the
   paper preset; DLT honest; honest with shuffled rewards; honest with frozen-copy ties;
   random tying. Trained by ``recipes/compare.py`` (``--jobs`` at a time, each run one
   process; set ``OMP_NUM_THREADS=1`` for one thread per process). For every run: test
   perplexity, unique layers of the tested model, and the three memory figures of
   :mod:`layershare.train.memory` (static after the last ``optimizer.step()``, peak,
   closed form).
2. **Synthetic environment** (:mod:`layershare.dlt.synthetic`): converged unique layers of
   the paper and honest presets for each state encoding and delta in {0, +0.05, -0.05}.
3. **Closed-form static memory of a 48-layer d=1600 decoder** (GPT-2 XL sizes, built on the
   meta device, tied with :class:`~layershare.dlt.TiedStack`, bytes counted): dense against
   1, 2, 4 and 12 unique layers, fp32 + AdamW (16 B / parameter) and the paper's bf16
   parameters (8 B / parameter). Closed form, not a GPU measurement.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_dlt.py --out runs/dlt16 --jobs 2

Writes ``OUT/report.md`` (the tables) and ``OUT/report.json``; ``--skip-train`` makes only
parts 2 and 3. Re-running resumes: finished runs are not trained again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def base_config(steps: int, layers: int, d_model: int) -> dict:
    return {
        "data": {"name": "brown"},
        "model": {"arch": "reference", "layers": layers, "d_model": d_model, "heads": 4,
                  "dropout": 0.1, "pos": "learned", "vocab_size": 2000},
        "train": {"steps": steps, "batch_size": 8, "seq_len": 64, "lr": 2e-3,
                  "warmup": max(1, steps // 20), "schedule": "constant", "grad_clip": 1.0,
                  "eval_every": max(1, steps // 15), "eval_batches": 10,
                  "save_every": steps, "seed": 0},
        "share": {"method": "dense"},
    }


def runs(steps: int, layers: int, d_model: int, k: int) -> dict[str, tuple[str, dict]]:
    """name -> (what it is, config)."""
    from layershare.dlt.synthetic import floor_decay

    decay = floor_decay(steps // 4, layers)  # one action every 4 steps, floor at 30%
    base = lambda: base_config(steps, layers, d_model)  # noqa: E731

    def dlt(**keys):
        cfg = base()
        cfg["share"] = {"method": "dlt"}
        cfg["dlt"] = {"epsilon_decay": decay, **keys}
        return cfg

    dense_k = base()
    dense_k["model"]["layers"] = k
    static = base()
    static["share"] = {"method": "tied", "group_size": layers // k, "strategy": "sequence"}
    return {
        f"dense-{layers}l": (f"dense, {layers} layers", base()),
        f"dense-{k}l": (f"dense, {k} layers", dense_k),
        f"static-{k}": (f"static tying, {k} sets (sequence)", static),
        "dlt-paper": ("DLT, paper preset", dlt(preset="paper")),
        "dlt-honest": ("DLT, honest preset", dlt(preset="honest")),
        "dlt-honest-shuffled": ("honest, shuffled rewards", dlt(preset="honest",
                                                                 shuffle_rewards=True)),
        "dlt-honest-frozen": ("honest, frozen-copy ties", dlt(preset="honest",
                                                                tie="frozen-copy")),
        "dlt-random": ("random tying", dlt(preset="paper", epsilon_start=1.0, epsilon_decay=1.0)),
    }


def train_all(out: Path, plan: dict, jobs: int) -> float:
    configs = out / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (_, cfg) in plan.items():
        path = configs / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        paths.append(str(path))
    start = time.time()
    subprocess.run([sys.executable, str(ROOT / "recipes" / "compare.py"), "--out", str(out),
                    "--jobs", str(jobs), *paths], check=True)
    return time.time() - start


def mib(x) -> str:
    return "-" if x is None else f"{x / 2**20:,.2f}"


def training_table(out: Path, plan: dict) -> tuple[str, list[dict]]:
    rows, lines = [], [
        "| run | what | test ppl | best valid step | unique layers (tested) | unique params "
        "| static MiB (measured) | closed form MiB (tested model) | peak RSS MiB | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, (what, _) in plan.items():
        r = json.loads((out / name / "results.json").read_text())
        if "dlt" in r:
            unique = len(set(r["dlt"]["test_model_roots"]))
            extra = {"final_state": r["dlt"]["state"], "final_unique": r["dlt"]["unique_layers"]}
        else:
            unique = round(r["layer_params"] / (r["dense_layer_params"] / r["layers"]))
            extra = {}
        row = {"run": name, "what": what, "test_ppl": r["test_ppl"],
               "best_step": r["best_valid"]["step"], "unique_layers": unique,
               "unique_params": r["unique_params"], "static_mem_bytes": r.get("static_mem_bytes"),
               "static_mem_kind": r.get("static_mem_kind"),
               "closed_form_mem_bytes": r["closed_form_mem_bytes"],
               "test_model_closed_form_mem_bytes": r["test_model_closed_form_mem_bytes"],
               "peak_mem_bytes": r["peak_mem_bytes"], "train_time_s": r["train_time_s"], **extra}
        rows.append(row)
        lines.append(f"| {name} | {what} | {r['test_ppl']:.1f} | {row['best_step']} | {unique} | "
                     f"{r['unique_params']:,} | {mib(row['static_mem_bytes'])} | "
                     f"{mib(row['test_model_closed_form_mem_bytes'])} | "
                     f"{mib(r['peak_mem_bytes'])} | {r['train_time_s']:.0f} |")
    return "\n".join(lines), rows


def synthetic_table(seeds: int) -> tuple[str, list[dict]]:
    import torch

    from layershare.dlt import DLTConfig
    from layershare.dlt.synthetic import floor_decay, run

    torch.set_num_threads(1)
    rows, lines = [], [
        "| preset | state encoding | actions | delta = 0 | delta = +0.05 | delta = -0.05 |",
        "|---|---|---:|---:|---:|---:|"]
    for actions in (500, 1000):
        decay = floor_decay(actions, 6)
        for preset in ("paper", "honest"):
            for enc in ("raw", "distance", "one-hot"):
                cfg = DLTConfig(preset=preset, state_encoding=enc, epsilon_decay=decay)
                cells = {}
                for delta in (0.0, 0.05, -0.05):
                    v = [run(cfg, delta, seed=s, actions=actions)["tail_unique"]
                         for s in range(seeds)]
                    cells[delta] = (sum(v) / len(v), min(v), max(v))
                rows.append({"preset": preset, "encoding": enc, "actions": actions,
                             **{str(d): c for d, c in cells.items()}})
                lines.append(f"| {preset} | {enc} | {actions} | " + " | ".join(
                    f"{m:.2f} ({lo:.1f}-{hi:.1f})" for m, lo, hi in cells.values()) + " |")
    return "\n".join(lines), rows


def xl_table() -> tuple[str, list[dict]]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from layershare.dlt import TiedStack
    from layershare.train.memory import closed_form_bytes

    cfg = GPT2Config(n_layer=48, n_embd=1600, n_head=25, vocab_size=50257, n_positions=1024)
    with torch.device("meta"):
        model = GPT2LMHeadModel(cfg)
    stack = TiedStack(model)
    rows, dense = [], None
    lines = ["| unique layers | unique params | fp32 + AdamW, GiB | bf16 + AdamW (paper), GiB "
             "| dense / this |", "|---:|---:|---:|---:|---:|"]
    for k in (48, 12, 4, 2, 1):
        size = 48 // k  # k groups of consecutive layers, each tied to its first layer
        stack.apply([(i // size) * size for i in range(48)])
        params = sum(p.numel() for p in model.parameters())
        fp32 = closed_form_bytes(model)
        dense = dense or fp32
        rows.append({"unique_layers": k, "unique_params": params, "fp32_bytes": fp32,
                     "bf16_bytes": fp32 // 2, "ratio": dense / fp32})
        lines.append(f"| {k}{' (dense)' if k == 48 else ''} | {params:,} | {fp32 / 2**30:.2f} | "
                     f"{fp32 / 2 / 2**30:.2f} | {dense / fp32:.2f}x |")
    return "\n".join(lines), rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--k", type=int, default=2, help="unique layers of the small baselines")
    p.add_argument("--seeds", type=int, default=5, help="seeds per synthetic cell")
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report, parts = [], {}
    plan = runs(args.steps, args.layers, args.d_model, args.k)
    if not args.skip_train:
        wall = train_all(args.out, plan, args.jobs)
        text, parts["training"] = training_table(args.out, plan)
        report += [f"## Training runs ({args.steps} steps, wall {wall:.0f} s this call)", text]
    start = time.time()
    text, parts["synthetic"] = synthetic_table(args.seeds)
    report += [f"## Synthetic environment ({args.seeds} seeds, {time.time() - start:.0f} s)",
               text]
    text, parts["xl"] = xl_table()
    report += ["## 48-layer d=1600 decoder, static memory (closed form)", text]
    (args.out / "report.md").write_text("\n\n".join(report) + "\n")
    (args.out / "report.json").write_text(json.dumps(parts, indent=2) + "\n")
    print("\n\n".join(report))


if __name__ == "__main__":
    main()
