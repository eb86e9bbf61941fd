"""Speech recognisers trained from scratch: ResidualTransformer against its honest baselines.

    OMP_NUM_THREADS=1 python benchmarks/speech_scratch.py run dense12 residual --root runs/asr
    python benchmarks/speech_scratch.py report --root runs/asr --out benchmarks/results

``run`` trains each named variant in turn: first the learning-rate sweep (the values of
``LRS``, grown past an edge where the best sits on one: protocol.py; each run a fifth of the
config's steps with the schedule scaled to match, scored by the valid CTC loss of its last
evaluation: a fifth of the way in, a recogniser's WER can still be ~100% at every rate,
where the loss already ranks them), then the full run at the sweep's best rate, for the
config's steps times ``--steps-scale``. The sweep keeps its length whatever the scale, so a
longer protocol can reuse the sweeps of a shorter one: give it a new ``--root`` (its runs
have other configs) holding a copy of the old ``ROOT/sweep``; a finished sweep run is read,
not rerun. Every run is an ordinary ``layershare train`` into ``ROOT/sweep/NAME-lrX`` or
``ROOT/NAME``, so running the same command again resumes where it stopped. Every variant
sees the same data, the same buckets in the same order, the same steps and schedule; only
the model and the rate differ.

``rtf`` times the recognisers side by side (run it under ``benchmarks/quiet.sh``);
``report`` writes ``NAME-table.md``, ``NAME.json``, ``NAME-pareto.png`` (test WER against
encoder-layer bytes) and ``NAME-curves.png`` (valid WER against frames seen), with the
side-by-side speeds of ``--rtf`` in the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import (  # noqa: E402  (a script beside its shared module)
    CONFIGS,
    grown_sweep,
    last_valid,
    plain_log_x,
    sweep_loss,
    train,
)

LRS = (1.5e-3, 3e-3, 6e-3)
SWEEP_FRACTION = 5
WIDTH = [1.0]  # --width-scale of this invocation (the GPU size doubles every width)
# name -> (config, --set overrides, label)
VARIANTS = {
    "dense12": ("asr-espeak-dense.yaml", [], "dense 12 layers"),
    "residual": ("asr-espeak-residual.yaml", [], "residual K=4 r=4 + diag"),
    "res-shared": ("asr-espeak-residual.yaml", ["share.rank=0", "share.diag=false"],
                   "residual: shared only"),
    "res-shared-diag": ("asr-espeak-residual.yaml", ["share.rank=0"], "residual: shared + diag"),
    "res-shared-lowrank": ("asr-espeak-residual.yaml", ["share.diag=false"],
                           "residual: shared + low rank"),
    "dense4": ("asr-espeak-dense-4l.yaml", [], "dense 4 layers"),
    "narrow12": ("asr-espeak-dense-narrow.yaml", [], "dense 12 narrow (d=54)"),
    "tied2": ("asr-espeak-tied.yaml", [], "tied K=2 (6 blocks x 2)"),
    "dense6": ("asr-espeak-dense-6l.yaml", [], "dense 6 layers"),
}


def widened(config: str, scale: float) -> list[str]:
    """Overrides that make a variant's width (d_model, ffn, conv channels) ``scale`` times
    its config's: the GPU size keeps every variant's shape relative to the others."""
    import yaml

    if scale == 1:
        return []
    model = yaml.safe_load((CONFIGS / config).read_text())["model"]
    return [f"model.{k}={round(model[k] * scale)}" for k in ("d_model", "ffn", "conv_channels")]


def config_steps(config: str) -> dict:
    import yaml

    train = yaml.safe_load((CONFIGS / config).read_text())["train"]
    return {k: train[k] for k in ("steps", "warmup", "eval_every", "save_every")}


def sweep(name: str, root: Path, extra: list[str]) -> float:
    """The rate of ``LRS`` whose short run ends with the lowest valid loss. A best rate at an
    edge of the grid is no optimum: the grid then grows by a factor of 2 past that edge (at
    most ``EXTEND`` times) until the best lies inside it."""
    config, overrides, _ = VARIANTS[name]
    overrides = overrides + widened(config, WIDTH[0])
    s = {k: max(v // SWEEP_FRACTION, 1) for k, v in config_steps(config).items()}
    short = [f"train.steps={s['steps']}", f"train.warmup={s['warmup']}",
             f"train.eval_every={s['steps'] // 2}", f"train.save_every={s['save_every']}"]
    # another width is another model: its own sweep folders (a finished one is only read)
    tag = name if WIDTH[0] == 1 else f"{name}-w{WIDTH[0]:g}"

    def score(lr: float) -> float:
        run = root / "sweep" / f"{tag}-lr{lr:g}"
        return sweep_loss(run, lambda: train(config, overrides, run,
                                             short + [f"train.lr={lr}"] + extra))

    scores = grown_sweep(LRS, score)
    best = min(scores, key=scores.get)
    (root / "sweep" / f"{name}.json").write_text(json.dumps(
        {"valid_loss_by_lr": {f"{k:g}": v for k, v in scores.items()}, "best": best,
         "valid_wer_by_lr": {f"{k:g}": last_valid(root / "sweep" / f"{tag}-lr{k:g}")
                             for k, v in scores.items() if v < math.inf}}, indent=1) + "\n")
    print(f"{name}: valid loss by lr {scores}; using {best:g}", flush=True)
    return best


def cmd_run(args) -> None:
    for name in args.variants:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    extra = ([f"data.dir={args.data_dir}"] if args.data_dir else []) + list(args.set)
    WIDTH[0] = args.width_scale
    for name in args.variants:
        config, overrides, _ = VARIANTS[name]
        lr = args.lr if args.lr else sweep(name, root, extra)
        longer = [f"train.{k}={max(1, round(v * args.steps_scale))}"
                  for k, v in config_steps(config).items()] if args.steps_scale != 1 else []
        train(config, overrides + widened(config, args.width_scale), root / name,
              [f"train.lr={lr}"] + longer + extra)


# -- measuring and reporting ----------------------------------------------------------------
def cmd_measure(args) -> None:
    """One model, one precision, in its own process (so its peak RSS is its own): load it,
    decode the test sets with one thread, print one JSON line."""
    import resource
    import time

    import torch

    from layershare.deploy.int8 import fp32_bytes, int8_bytes, quantize_int8_
    from layershare.evaluate.ctc import evaluate_ctc, load_ctc_model, speech_sets

    torch.set_num_threads(1)
    sets = {}
    for name in ("espeak-asr", "librivox"):
        sets.update(speech_sets(name, Path(args.data_dir) if args.data_dir else None, False))
    start = time.perf_counter()
    model = load_ctc_model(args.run)
    load_s = time.perf_counter() - start
    layers = model.encoder.layers
    out = {"run": args.run, "precision": args.precision, "load_s": round(load_s, 3),
           "layer_bytes_fp32": fp32_bytes(layers), "layer_bytes_int8": int8_bytes(layers),
           "model_bytes_fp32": fp32_bytes(model), "model_bytes_int8": int8_bytes(model)}
    if args.precision == "int8":
        quantize_int8_(model)
    for name, utterances in sets.items():
        r = evaluate_ctc(model, utterances)
        out[name] = {k: r[k] for k in ("wer", "words", "utterances", "audio_seconds",
                                         "decode_seconds", "real_time_factor")}
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out), flush=True)


def cmd_rtf(args) -> None:
    """Real-time factor side by side: every run's recogniser decodes the espeak-asr test set
    (features + encoder + greedy CTC, one thread), the runs alternating round by round so the
    drift of a shared machine hits them alike; the median round of each, and its ratio to
    the first run. Run it under benchmarks/quiet.sh."""
    import statistics

    import torch

    from layershare.evaluate.ctc import load_ctc_model, speech_sets, transcribe

    torch.set_num_threads(1)
    utterances = speech_sets("espeak-asr", Path(args.data_dir) if args.data_dir else None,
                             False)["espeak-asr/test"]
    audio = sum(u.seconds for u in utterances)
    models = [load_ctc_model(run) for run in args.runs]
    for model in models:  # warm-up
        transcribe(model, utterances[:16])
    seconds = [[] for _ in models]
    for _ in range(args.rounds):
        for i, model in enumerate(models):
            seconds[i].append(transcribe(model, utterances)[1])
    medians = [statistics.median(s) for s in seconds]
    out = {"audio_seconds": audio, "utterances": len(utterances), "rounds": args.rounds,
           "threads": 1, "runs": {run: {"seconds": m, "real_time_factor": m / audio,
                                        "vs_first": m / medians[0], "all_rounds": s}
                                  for run, m, s in zip(args.runs, medians, seconds)}}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def convergence(run: Path) -> dict:
    """Valid WER at the evaluation nearest 80% of the steps and the best after it:
    converged when the last 20% improved it by less than 2% (relative)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [(r["step"], r["wer"]) for r in rows if r.get("split") == "valid"]
    last = valid[-1][0]
    at80 = min(valid, key=lambda v: abs(v[0] - 0.8 * last))
    after = min(w for s, w in valid if s >= at80[0])
    gain = (at80[1] - after) / max(at80[1], 1e-9)
    return {"valid_wer_at_80pct": at80[1], "valid_wer_best_after": after,
            "last_20pct_gain": round(gain, 4), "converged": gain < 0.02,
            "curve": valid}


def cmd_report(args) -> None:
    root, out = Path(args.root), Path(args.out)
    rows = []
    for name, (_, _, label) in VARIANTS.items():
        run = root / name
        if not (run / "results.json").is_file():
            continue
        results = json.loads((run / "results.json").read_text())
        sweep_file = root / "sweep" / f"{name}.json"
        row = {"name": name, "label": label, "results": {
                   k: results[k] for k in ("layer_params", "unique_params", "train_tokens",
                                           "train_time_s", "steps", "best_valid")},
               "sweep": json.loads(sweep_file.read_text()) if sweep_file.is_file() else None,
               "convergence": convergence(run), "lr": config_lr(run)}
        for precision in ("fp32", "int8"):
            cached = run / f"measure-{precision}.json"  # a finished run is measured once
            if cached.is_file() and cached.stat().st_mtime > (run / "results.json").stat().st_mtime:
                row[precision] = json.loads(cached.read_text())
                continue
            argv = [sys.executable, __file__, "measure", str(run / "model"), "--precision",
                    precision] + (["--data-dir", args.data_dir] if args.data_dir else [])
            if args.wrap:
                argv = [args.wrap] + argv
            proc = subprocess.run(argv, capture_output=True, text=True, check=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            row[precision] = json.loads(proc.stdout.strip().splitlines()[-1])
            cached.write_text(json.dumps(row[precision]) + "\n")
            print(name, precision, {k: v["wer"] for k, v in row[precision].items()
                                    if isinstance(v, dict)}, flush=True)
        rows.append(row)
    if args.rtf:  # side-by-side speeds (cmd_rtf) replace those measured one model at a time
        measured = json.loads(Path(args.rtf).read_text())["runs"]
        side = {Path(run).resolve(): v for run, v in measured.items()}
        for row in rows:  # one column, one kind of measurement: every row side by side
            run = (root / row["name"]).resolve()
            if run not in side:
                raise SystemExit(f"{args.rtf} has no side-by-side speed of {run}: measure "
                                 "every run of the report with `rtf` together")
            row["rtf_side_by_side"] = side[run]
        dense = next((r for r in rows if r["name"] == "dense12"), rows[0])
        for row in rows:
            row["rtf_side_by_side"]["vs_dense"] = (row["rtf_side_by_side"]["real_time_factor"]
                                                   / dense["rtf_side_by_side"]["real_time_factor"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / f"{args.name}-table.md").write_text(table(rows))
    plots(rows, out, args.name)
    print(table(rows))


def config_lr(run: Path) -> float:
    import yaml
    return float(yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"])


def table(rows: list[dict]) -> str:
    dense = next((r for r in rows if r["name"] == "dense12"), None)
    lines = ["| model | enc.-layer params | x fewer | layer MB fp32 / int8 "
             "| test WER % fp32 (int8) "
             "| test-voices WER % | LibriVox WER % | lr | frames seen | train min "
             "| RTF 1 thread (vs dense) "
             "| peak RSS MiB | converged |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        f, q, res = r["fp32"], r["int8"], r["results"]
        ratio = dense["results"]["layer_params"] / res["layer_params"] if dense else float("nan")
        c = r["convergence"]
        lines.append(
            f"| {r['label']} | {res['layer_params']:,} | {ratio:.2f}x | "
            f"{f['layer_bytes_fp32'] / 1e6:.2f} / {f['layer_bytes_int8'] / 1e6:.2f} | "
            f"{f['espeak-asr/test']['wer']:.2f} ({q['espeak-asr/test']['wer']:.2f}) | "
            f"{f['espeak-asr/test-voices']['wer']:.2f} "
            f"({q['espeak-asr/test-voices']['wer']:.2f}) | "
            f"{f['librivox']['wer']:.1f} | {r['lr']:g} | {res['train_tokens'] / 1e6:.1f}M | "
            f"{res['train_time_s'] / 60:.0f} | {rtf(r)} | "
            f"{f['peak_rss_bytes'] / 2**20:.0f} | "
            f"{'yes' if c['converged'] else 'still improving'} "
            f"({100 * c['last_20pct_gain']:.1f}% in the last 20%) |")
    return "\n".join(lines) + "\n"


def rtf(row: dict) -> str:
    """The real-time factor; where it was measured side by side, with its ratio to dense 12's
    (measured in the same run)."""
    side = row.get("rtf_side_by_side")
    if side:
        return f"{side['real_time_factor']:.4f} ({side['vs_dense']:.2f}x)"
    return f"{row['fp32']['espeak-asr/test']['real_time_factor']:.4f}"


def plots(rows: list[dict], out: Path, name: str = "speech-scratch") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for i, r in enumerate(rows):  # one colour per model: circle fp32, square int8, joined
        color = f"C{i}"
        xs = [r[p][f"layer_bytes_{p}"] / 1e6 for p in ("fp32", "int8")]
        ys = [r[p]["espeak-asr/test"]["wer"] for p in ("fp32", "int8")]
        ax.plot(xs, ys, color=color, alpha=0.5, zorder=1)
        ax.scatter(xs[:1], ys[:1], marker="o", color=color, zorder=3, label=r["label"])
        ax.scatter(xs[1:], ys[1:], marker="s", color=color, zorder=3)
    plain_log_x(ax)
    ax.set_xlabel("encoder-layer bytes (MB, log scale)")
    ax.set_ylabel("test WER % (espeak-asr test, training voices)")
    ax.set_title("Speech recognisers trained from scratch: WER against bytes "
                 "(circle fp32, square int8)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(out / f"{name}-pareto.png", dpi=130)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        per_step = r["results"]["train_tokens"] / r["results"]["steps"]
        steps, wers = zip(*r["convergence"]["curve"])
        ax.plot([s * per_step / 1e6 for s in steps], wers, marker=".", label=r["label"])
    ax.set_xlabel("input frames seen (millions, 10 ms each)")
    ax.set_ylabel("valid WER % (the fixed valid subset)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{name}-curves.png", dpi=130)
    plt.close(fig)


def cmd_trend(args) -> None:
    """Test WER against the protocol's length (frames seen), one line per variant, from the
    JSONs of ``report`` for protocols of different length: does a gap close with training?"""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list] = {}
    for report in args.reports:
        for r in json.loads(Path(report).read_text()):
            lines.setdefault(r["label"], []).append(
                (r["results"]["train_tokens"] / 1e6, r["fp32"]["espeak-asr/test"]["wer"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in lines.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("input frames seen by the end of the run (millions; one run per point)")
    ax.set_ylabel("test WER % (espeak-asr test)")
    ax.set_title("Every protocol's final test WER: does a gap close with training?", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(json.dumps(lines, indent=1))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="sweep the rate, then train, each variant in turn")
    r.add_argument("variants", nargs="+", help=", ".join(VARIANTS))
    r.add_argument("--root", default="runs/asr")
    r.add_argument("--data-dir", default=None, help="where espeak-asr is prepared")
    r.add_argument("--lr", type=float, default=None, help="skip the sweep, use this rate")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one more override for every run (e.g. train.device=cuda)")
    r.add_argument("--width-scale", type=float, default=1.0,
                   help="every variant's d_model, ffn and conv channels times this")
    r.add_argument("--steps-scale", type=float, default=1.0,
                   help="the full runs' steps, warmup, eval and save intervals times this")
    r.set_defaults(func=cmd_run)
    m = sub.add_parser("measure", help="(internal) WER, RTF and peak memory of one model")
    m.add_argument("run")
    m.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    m.add_argument("--data-dir", default=None)
    m.set_defaults(func=cmd_measure)
    t = sub.add_parser("rtf", help="real-time factors of runs side by side (quiet.sh)")
    t.add_argument("runs", nargs="+", help="run directories; the first is the reference")
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--data-dir", default=None)
    t.add_argument("--out", default=None, help="also write the JSON here")
    t.set_defaults(func=cmd_rtf)
    q = sub.add_parser("report", help="measure every finished run; table and plots")
    q.add_argument("--root", default="runs/asr")
    q.add_argument("--out", default="benchmarks/results")
    q.add_argument("--data-dir", default=None)
    q.add_argument("--wrap", default=None, help="run each measurement under this (quiet.sh)")
    q.add_argument("--rtf", default=None,
                   help="the JSON of `rtf` (side by side): its speeds go in the table")
    q.add_argument("--name", default="speech-scratch",
                   help="file names: NAME.json, NAME-table.md, NAME-pareto.png, NAME-curves.png")
    q.set_defaults(func=cmd_report)
    g = sub.add_parser("trend", help="test WER against the length of each protocol (a PNG)")
    g.add_argument("reports", nargs="+", help="the NAME.json files of report")
    g.add_argument("--out", required=True, help="the PNG to write")
    g.set_defaults(func=cmd_trend)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
