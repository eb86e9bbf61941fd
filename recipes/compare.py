"""Train several configs on the same data and compare them side by side.

Each config runs as ``layershare train --config CFG --set ... --out OUT/NAME`` (skipped when
``OUT/NAME/results.json`` exists, so an interrupted comparison resumes), then one table
(stdout and ``OUT/results.md``), ``OUT/results.json`` and a Pareto plot
``OUT/pareto.png``: test quality against unique layer-stack parameters, dense baselines in
black. The anchors' rule applies: a shared model is only worth its name if it beats the
dense models of the same or smaller unique size.

``--jobs N`` trains N configs at once (each run's output goes to ``OUT/NAME.log``): quality
figures are unaffected, but the runs share the machine, so their tokens/s are only
comparable with each other when they all ran side by side for the whole time. The first
failure stops the comparison: no further run starts. With a ``torchrun`` launcher and
``--jobs`` > 1, give each run its own rendezvous (``torchrun --standalone ...``).
"unique layers" is unique layer-stack parameters over one dense layer's (fractional for
low-rank or residual sharing); the "last 10%" columns are the steady state of runs whose
parameter set changes while they train (DLT), measured over the final tenth of the steps.

    python recipes/compare.py --out runs/demo configs/lm-brown-dense.yaml \\
        configs/lm-brown-residual.yaml --set train.steps=300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import yaml

# the task's headline metric first: translation runs report a perplexity too
METRICS = (("test_bleu", "test BLEU", True), ("test_acc", "test accuracy", True),
           ("test_ppl", "test perplexity", False))


def run(config: Path, out: Path, overrides: list[str], launcher: list[str],
        log: Path | None = None) -> dict:
    """Train ``config`` into ``out`` unless done; with ``log``, quietly, output to that file."""
    result = out / "results.json"
    if not result.exists():
        cmd = [*launcher, "train", "--config", str(config), "--out", str(out)]
        for item in overrides:
            cmd += ["--set", item]
        print("$", " ".join(cmd), flush=True)
        if log is None:
            code = subprocess.run(cmd).returncode
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as f:  # appended: a resumed comparison keeps the earlier cause
                f.write(f"$ {' '.join(cmd)} --quiet\n")
                f.flush()
                code = subprocess.run(cmd + ["--quiet"], stdout=f,
                                      stderr=subprocess.STDOUT).returncode
        if code:
            where = f", see {log}" if log is not None else ""
            raise SystemExit(f"compare: {config.stem} failed (exit {code}){where}")
    row = {"config": config.stem, **json.loads(result.read_text())}
    row["unique_layers_equiv"] = row["layer_params"] / (row["dense_layer_params"]
                                                        / stacked_layers(row, out))
    return row


def stacked_layers(row: dict, out: Path) -> int:
    """Layer positions of the run's model; from its config for results written before
    ``count`` recorded them (both stacks for translation)."""
    if "layers" in row:
        return row["layers"]
    model = yaml.safe_load((out / "config.yaml").read_text())["model"]
    if row.get("task") == "translation":
        return ((model.get("encoder_layers") or model["layers"])
                + (model.get("decoder_layers") or model["layers"]))
    return model["layers"]


def run_all(one, configs: list[Path], jobs: int) -> list[dict]:
    """``one(config)`` for every config, ``jobs`` at a time, results in config order. A run is
    started only while none has failed; the first failure is reported at once, the runs
    already going are waited for (they resume on the next call), then it ends the program."""
    if jobs == 1:
        return [one(cfg) for cfg in configs]
    queue, running, results, failed = list(enumerate(configs)), {}, {}, None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while queue or running:
            while queue and len(running) < jobs:
                i, cfg = queue.pop(0)
                running[pool.submit(one, cfg)] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                if future.exception() is None:
                    results[i] = future.result()
                elif failed is None:
                    failed, queue = future.exception(), []
                    if running:
                        print(f"{failed}; waiting for the runs already started",
                              file=sys.stderr, flush=True)
    if isinstance(failed, SystemExit):
        raise SystemExit(str(failed))
    if failed is not None:
        raise failed
    return [results[i] for i in range(len(configs))]


def write(path: Path, text: str) -> None:
    """Whole or not at all: a temporary file renamed over ``path``."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    tmp.replace(path)


def metric_of(rows: list[dict]) -> tuple[str, str, bool]:
    for key, label, higher in METRICS:
        if all(key in r for r in rows):
            return key, label, higher
    raise SystemExit("compare: the runs report no common test metric")


def table(rows: list[dict], key: str, label: str) -> str:
    final = any("final_tokens_per_s" in r for r in rows)
    head = (f"| config | method | params | unique layer params | unique layers | "
            f"layer compression | {label} | train tokens/s | peak memory (MiB) |")
    if final:
        head += " tokens/s, last 10% | peak memory, last 10% (MiB) |"
    lines = [head, "|---|---|" + "---:|" * (head.count("|") - 3)]
    for r in rows:
        line = (f"| {r['config']} | {r.get('method', '?')} | {r['unique_params']:,} | "
                f"{r['layer_params']:,} | {r['unique_layers_equiv']:.1f} | "
                f"{r['dense_layer_params'] / r['layer_params']:.2f}x | {r[key]:.3f} | "
                f"{r['train_tokens_per_s']:,.0f} | {r['peak_mem_bytes'] / 2**20:,.0f} |")
        if final:  # "-": a CPU run (no resettable peak) or one resumed inside its window
            speed, mem = r.get("final_tokens_per_s"), r.get("final_peak_mem_bytes")
            line += (f" {'-' if speed is None else f'{speed:,.0f}'} | "
                     f"{'-' if mem is None else f'{mem / 2**20:,.0f}'} |")
        lines.append(line)
    return "\n".join(lines)


def plot(rows: list[dict], key: str, label: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        dense = r.get("method", "dense") == "dense"
        ax.plot(r["layer_params"] / 1e6, r[key], "ks" if dense else "bo")
        ax.annotate(r["config"], (r["layer_params"] / 1e6, r[key]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("unique layer-stack parameters (millions)")
    ax.set_ylabel(label)
    ax.set_title("quality vs unique layer parameters (dense = black squares)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every config (repeatable)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="configs trained at once (logs to OUT/NAME.log when > 1)")
    parser.add_argument("--launcher", default=f"{sys.executable} -m layershare",
                        help="how to start layershare, e.g. "
                             "'torchrun --nproc_per_node=2 -m layershare'")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit("compare: --jobs must be at least 1")
    stems = [cfg.stem for cfg in args.configs]
    if len(set(stems)) < len(stems):
        raise SystemExit(f"compare: two configs share a file name (runs go to OUT/NAME): {stems}")
    launcher = args.launcher.split()

    def one(cfg: Path) -> dict:
        log = args.out / f"{cfg.stem}.log" if args.jobs > 1 else None
        return run(cfg, args.out / cfg.stem, args.set, launcher, log)

    rows = run_all(one, args.configs, args.jobs)
    key, label, higher = metric_of(rows)
    text = table(rows, key, label)
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = " ".join(f"--set {s}" for s in args.set)
    jobs = f" --jobs {args.jobs}" if args.jobs > 1 else ""
    command = (f"python recipes/compare.py --out {args.out}{jobs} "
               f"{' '.join(map(str, args.configs))} {overrides}")
    write(args.out / "results.md", f"# Side by side\n\nCommand: `{command.strip()}`\n\n{text}\n")
    write(args.out / "results.json", json.dumps(rows, indent=2) + "\n")
    plot(rows, key, label, args.out / "pareto.png")
    print(f"\n{text}\n\n{'higher' if higher else 'lower'} is better; wrote {args.out}/results.md, "
          "results.json, pareto.png")


if __name__ == "__main__":
    main()
