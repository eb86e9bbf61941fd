"""LightFormer where the paper lives: dense -> SVD weight transfer into shared low rank ->
fine-tuning, against every baseline that separates what each part buys.

    python benchmarks/lightformer.py plan mt          # the variants' sizes, nothing trained
    OMP_NUM_THREADS=1 python benchmarks/lightformer.py run mt --dense-steps N --finetune-steps M
    python benchmarks/lightformer.py report mt        # int8 of each run, table and plots

Tasks (their base configs): ``mt`` translation De->En (configs/mt-deen-dense.yaml), ``sum``
summarisation (configs/sum-debian-dense.yaml), ``cls`` classification
(configs/cls-wordnet-dense.yaml). Variants, every one with its learning rate chosen by
short runs (a fifth of its steps, valid loss) from three values, grown past an edge of
them where the best sits on one (protocol.py):

* ``dense``: the reference, ``N`` steps (trained to convergence: the caller picks ``N`` from
  a dense run whose valid metric is flat over its last 20%);
* ``lightformer``: ``dense``'s weights (``model.init_from``) transferred by SVD into low-rank
  factors whose basis groups of ``K`` layers share (``share.method: lowrank``, ``init:
  mean``), the largest rank with >= 3.8x fewer layer parameters, then ``M`` steps;
* ``dense-long``: dense for ``N + M`` steps, so extra training is not mistaken for the method;
* ``transfer-k1``: the same transfer without sharing (K=1) at no more layer parameters;
* ``shared-scratch``: the same shared low rank without transfer, ``N + M`` steps;
* ``residual``: ResidualTransformer from scratch at no more layer parameters, ``N + M``;
* ``shallow`` and ``narrow``: dense models of no more unique layer parameters, ``N + M``.

Every run warms up for a tenth of its steps and evaluates twenty times (:func:`schedule`);
a full run decodes the first 300 valid pairs at each evaluation (the valid BLEU / ROUGE-L
that picks its best checkpoint and judges convergence) and the whole test split at its end.
Parameter counts come from ``layershare.count`` on the built models (:func:`plan`), never from
a formula typed here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import CONFIGS, grown_sweep, plain_log_x, sweep_loss, train  # noqa: E402

TASKS = {"mt": "mt-deen-dense.yaml", "sum": "sum-debian-dense.yaml",
         "cls": "cls-wordnet-dense.yaml"}
LRS = (5e-4, 1e-3, 2e-3)
TARGET = 3.8          # LightFormer's "3.8x fewer parameters" (of the layer stacks here)
GROUP = 3             # K: layers whose low-rank basis is shared
SWEEP_FRACTION = 5
EVALS = 20            # evaluations of a full run: the last 20% (convergence) holds four
SCHEDULE_KEYS = {f"train.{k}" for k in ("steps", "warmup", "eval_every", "save_every")}
BASE: dict = {}       # --model KEY=VALUE of this invocation: the dense model's shape
EXTRA: list = []      # --set KEY=VALUE of this invocation: for every run (device, batch...)
VALID_DECODE = 300    # valid pairs decoded at every evaluation: the convergence curve
# the full runs: the whole test split, and a valid BLEU / ROUGE-L curve that picks the best
FULL = ["eval.test_limit=0", f"eval.valid_decode={VALID_DECODE}"]
QUALITY = {"mt": ("bleu", "chrf"), "sum": ("rougeL", "rouge1", "rouge2"),
           "cls": ("acc", "macro_f1")}   # the first of each picks, plots and converges
TRANSFERS = ("lightformer", "transfer-k1")  # the variants that start from the dense run
SCALE = {"acc": 100, "macro_f1": 100}  # fractions shown as percentages
LABELS = {"dense": "dense (the source)", "lightformer": "LightFormer (transfer + share)",
          "dense-long": "dense, same total steps", "transfer-k1": "transfer, no sharing (K=1)",
          "shared-scratch": "shared low rank, no transfer", "residual": "ResidualTransformer",
          "shallow": "dense, fewer layers", "narrow": "dense, narrower"}


def base_model(config: str) -> dict:
    """The config's ``model:`` section with this invocation's ``--model`` overrides."""
    import yaml
    return {**yaml.safe_load((CONFIGS / config).read_text())["model"], **BASE}


def layer_params(config: str, model_over: dict, share: dict | None) -> int:
    """Unique parameters of the layer stacks of ``config``'s model with ``model_over``
    applied and converted by ``share`` (None: dense), counted by layershare.count."""
    import layershare
    from layershare.models import EncoderClassifier, EncoderClassifierConfig, Seq2Seq, Seq2SeqConfig

    m = {**base_model(config), **model_over}
    common = dict(vocab_size=1000, d_model=m["d_model"], n_heads=m["heads"],
                  d_ff=m.get("ffn") or 4 * m["d_model"], max_len=64)
    if config.startswith("cls"):
        model = EncoderClassifier(EncoderClassifierConfig(**common, n_layers=m["layers"],
                                                          n_classes=45))
    else:
        model = Seq2Seq(Seq2SeqConfig(**common, encoder_layers=m["layers"],
                                      decoder_layers=m["layers"]))
    if share:
        layershare.convert(model, **{"init": "scratch", **share})
    return layershare.count(model).layer_params


def largest(values, fits) -> int | None:
    """The largest of ``values`` (ascending) for which ``fits(value)`` holds."""
    best = None
    for v in values:
        if fits(v):
            best = v
    return best


def plan(task: str) -> dict[str, dict]:
    """Each variant's overrides and layer parameters, the ranks and sizes chosen to match."""
    config = TASKS[task]
    m = base_model(config)
    dense = layer_params(config, {}, None)
    d, layers = m["d_model"], m["layers"]
    lf_rank = largest(range(1, d + 1), lambda r: dense / layer_params(
        config, {}, dict(method="lowrank", group_size=min(GROUP, layers), rank=r,
                         diag=False)) >= TARGET)
    lf = dict(method="lowrank", group_size=min(GROUP, layers), rank=lf_rank, diag=False)
    budget = layer_params(config, {}, lf)
    k1_rank = largest(range(1, d + 1), lambda r: layer_params(
        config, {}, dict(method="lowrank", group_size=1, rank=r, diag=False)) <= budget)
    res_rank = largest(range(0, d + 1), lambda r: layer_params(
        config, {}, dict(method="residual", group_size=layers, rank=r)) <= budget)
    shallow = largest(range(1, layers + 1), lambda n: layer_params(
        config, {"layers": n}, None) <= budget)
    heads = m["heads"]
    narrow = largest(range(heads * 2, d + 1, heads * 2), lambda w: layer_params(
        config, {"d_model": w, "ffn": 4 * w}, None) <= budget)
    out = {
        "dense": {"share": None, "model": {}},
        "lightformer": {"share": {**lf, "init": "mean"}, "model": {}, "transfer": True},
        "dense-long": {"share": None, "model": {}, "long": True},
        "transfer-k1": {"share": dict(method="lowrank", group_size=1, rank=k1_rank,
                                      diag=False, init="mean"), "model": {}, "transfer": True},
        "shared-scratch": {"share": lf, "model": {}, "long": True},
        "residual": ({"share": dict(method="residual", group_size=layers, rank=res_rank),
                      "model": {}, "long": True} if res_rank is not None else None),
        "shallow": ({"share": None, "model": {"layers": shallow}, "long": True}
                    if shallow is not None else None),
        "narrow": ({"share": None, "model": {"d_model": narrow, "ffn": 4 * narrow},
                    "long": True} if narrow is not None else None),
    }
    for name, v in out.items():
        if v is not None:
            v["layer_params"] = layer_params(config, v["model"], v["share"])
            v["fewer"] = round(dense / v["layer_params"], 3)
    return out


def overrides(variant: dict) -> list[str]:
    sets = [f"model.{k}={v}" for k, v in {**BASE, **variant["model"]}.items()]
    for k, v in (variant["share"] or {"method": "dense"}).items():
        sets.append(f"share.{k}={v}")
    return sets


def cmd_plan(args) -> None:
    print(json.dumps(plan(args.task), indent=1))


def cmd_run(args) -> None:
    config, root = TASKS[args.task], Path(args.root) / args.task
    n, m = args.dense_steps, args.finetune_steps
    variants = plan(args.task)
    names = args.variants or [k for k, v in variants.items() if v is not None]
    if "dense" not in names and any(variants[k] and variants[k].get("transfer") for k in names):
        names = ["dense"] + names  # the transfers start from it
    for name in names:
        v = variants[name]
        if v is None:
            print(f"{name}: no size fits the budget at this model size; skipped", flush=True)
            continue
        steps = m if v.get("transfer") else n + m if v.get("long") else n
        sets = overrides(v) + schedule(steps)
        if v.get("transfer"):
            sets.append(f"model.init_from={root / 'dense'}")
        lr = sweep(config, name, sets, steps, root)
        train(config, sets, root / name, [f"train.lr={lr}"] + FULL + EXTRA)


def schedule(steps: int, evals: int = EVALS) -> list[str]:
    """A run of ``steps``: warm-up a tenth of it (so a sweep's short run is the full run's
    schedule compressed, whatever its shape), ``evals`` evaluations, a checkpoint every
    half evaluation interval."""
    every = max(steps // evals, 1)
    return [f"train.steps={steps}", f"train.warmup={steps // 10}",
            f"train.eval_every={every}", f"train.save_every={max(every // 2, 1)}"]


def sweep(config: str, name: str, sets: list[str], steps: int, root: Path) -> float:
    """The rate whose run of a fifth of ``steps`` ends with the lowest valid loss: ``LRS``,
    grown past an edge where the best sits on one (protocol.grown_sweep)."""
    short = max(steps // SWEEP_FRACTION, 1)
    base = [s for s in sets if s.split("=")[0] not in SCHEDULE_KEYS]
    base += schedule(short, evals=2) + [
        "eval.test_limit=1", "eval.valid_decode=0"]  # a sweep reads its valid loss

    def score(lr: float) -> float:
        run = root / "sweep" / f"{name}-lr{lr:g}"  # the short schedule wins over EXTRA's
        return sweep_loss(run, lambda: train(config, EXTRA + base, run, [f"train.lr={lr}"]))

    scores = grown_sweep(LRS, score)
    best = min(scores, key=scores.get)
    (root / "sweep" / f"{name}.json").write_text(json.dumps(
        {"valid_loss_by_lr": {f"{k:g}": v for k, v in scores.items()}, "best": best}) + "\n")
    return best


# -- measuring and reporting ----------------------------------------------------------------
def cmd_measure(args) -> None:
    """(internal) One finished run in int8 (weight-only, per-row: layershare.deploy.int8): the
    test metrics and the bytes of its layer stacks and whole model, fp32 and int8; one JSON
    line. Its own process, one thread, so runs do not share state."""
    import torch

    from layershare.cli.common import run_dir
    from layershare.deploy.int8 import fp32_bytes, int8_bytes, quantize_int8_
    from layershare.train.evaluate import split_metrics

    torch.set_num_threads(1)
    cfg, model, device, autocast, build_task = run_dir(Path(args.run))
    task = build_task(cfg, Path(args.run), progress=False, setup=False)
    stacks = torch.nn.ModuleList([getattr(model, part).layers for part in ("encoder", "decoder")
                                  if hasattr(model, part)])
    out = {"layer_bytes_fp32": fp32_bytes(stacks), "layer_bytes_int8": int8_bytes(stacks),
           "model_bytes_fp32": fp32_bytes(model), "model_bytes_int8": int8_bytes(model)}
    quantize_int8_(model)
    out.update(split_metrics(task, model, "test", device, None, autocast))
    print(json.dumps(out), flush=True)


def convergence(run: Path, metric: str) -> dict:
    """The valid ``metric`` (higher is better) at the evaluation nearest 80% of the steps and
    the best after it: converged when the last 20% gained less than 2% (relative), the rule
    of report_speech_scratch.convergence."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [(r["step"], r[metric]) for r in rows if r.get("split") == "valid" and metric in r]
    if not valid:
        return {"converged": None, "last_20pct_gain": None, "curve": []}
    at80 = min(valid, key=lambda v: abs(v[0] - 0.8 * valid[-1][0]))
    after = max(v for s, v in valid if s >= at80[0])
    gain = (after - at80[1]) / max(abs(at80[1]), 1e-9)
    return {"valid_at_80pct": at80[1], "valid_best_after": after,
            "last_20pct_gain": round(gain, 4), "converged": gain < 0.02, "curve": valid}


def cmd_report(args) -> None:
    root, out = Path(args.root) / args.task, Path(args.out)
    metrics = QUALITY[args.task]
    rows = []
    for name in LABELS:
        run = root / name
        done = run / "results.json"
        if not done.is_file():
            continue
        results = json.loads(done.read_text())
        cached = run / "measure-int8.json"  # a finished run is measured once
        if not (cached.is_file() and cached.stat().st_mtime > done.stat().st_mtime):
            proc = subprocess.run([sys.executable, __file__, "measure", str(run)],
                                  capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"{run}: measuring it in int8 failed (above)")
            cached.write_text(proc.stdout.strip().splitlines()[-1] + "\n")
        sweep_file = root / "sweep" / f"{name}.json"
        rows.append({"name": name, "label": LABELS[name], "results": results,
                     "int8": json.loads(cached.read_text()),
                     "sweep": json.loads(sweep_file.read_text()) if sweep_file.is_file() else None,
                     "lr": config_lr(run), "transfer": name in TRANSFERS,
                     "convergence": convergence(run, metrics[0])})
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"lightformer-{args.task}"
    Path(f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    Path(f"{stem}-table.md").write_text(table(rows, metrics))
    plots(rows, metrics[0], stem)
    print(table(rows, metrics))


def table(rows: list[dict], metrics: tuple) -> str:
    """One line per run: sizes, test quality fp32 (int8), rate, steps, tokens, time,
    convergence."""
    dense = next((r for r in rows if r["name"] == "dense"), None)
    head = " | ".join(f"test {m} fp32 (int8)" for m in metrics)
    lines = [f"| model | layer params | x fewer | layer MB fp32 / int8 | {head} | lr | steps "
             "| train tokens | train min | converged |",
             "|---|---:|---:|---:|" + "---:|" * len(metrics) + "---:|---:|---:|---:|---|"]
    for r in rows:
        res, q = r["results"], r["int8"]
        ratio = dense["results"]["layer_params"] / res["layer_params"] if dense else float("nan")
        quality = " | ".join(f"{SCALE.get(m, 1) * res[f'test_{m}']:.2f} "
                             f"({SCALE.get(m, 1) * q[f'test_{m}']:.2f})" for m in metrics)
        c = r["convergence"]
        conv = ("-" if c["converged"] is None else
                f"{'yes' if c['converged'] else 'still improving'} "
                f"({100 * c['last_20pct_gain']:+.1f}% in the last 20%)")
        lines.append(
            f"| {r['label']} | {res['layer_params']:,} | {ratio:.2f}x | "
            f"{q['layer_bytes_fp32'] / 1e6:.2f} / {q['layer_bytes_int8'] / 1e6:.2f} | {quality} | "
            f"{r['lr']:g} | {res['steps']:,} | {res['train_tokens'] / 1e6:.1f}M | "
            f"{res['train_time_s'] / 60:.0f} | {conv} |")
    return "\n".join(lines) + "\n"


def config_lr(run: Path) -> float:
    """The rate the run trained at, from its own config.yaml."""
    import yaml
    return float(yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"])


def plots(rows: list[dict], metric: str, stem: Path) -> None:
    """``STEM-pareto.png`` (test metric against layer bytes, fp32 circle and int8 square per
    model) and ``STEM-curves.png`` (valid metric against training tokens)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = SCALE.get(metric, 1)
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, r in enumerate(rows):
        xs = [r["int8"][f"layer_bytes_{p}"] / 1e6 for p in ("fp32", "int8")]
        ys = [scale * r["results"][f"test_{metric}"], scale * r["int8"][f"test_{metric}"]]
        ax.plot(xs, ys, color=f"C{i}", alpha=0.5, zorder=1)
        ax.scatter(xs[:1], ys[:1], marker="o", color=f"C{i}", zorder=3, label=r["label"])
        ax.scatter(xs[1:], ys[1:], marker="s", color=f"C{i}", zorder=3)
    plain_log_x(ax)
    ax.set_xlabel("layer-stack bytes (MB, log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{stem.name}: quality against bytes (circle fp32, square int8)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(f"{stem}-pareto.png", dpi=130)
    plt.close(fig)

    source = next((r["results"]["train_tokens"] for r in rows if r["name"] == "dense"), 0)
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        curve = r["convergence"]["curve"]
        if curve:
            per_step = r["results"]["train_tokens"] / r["results"]["steps"]
            offset = source if r["transfer"] else 0  # a transfer goes on from its source
            steps, values = zip(*curve)
            ax.plot([(offset + s * per_step) / 1e6 for s in steps], [scale * v for v in values],
                    marker=".", label=r["label"])
    ax.set_xlabel("training tokens seen (millions; a transfer's own start after its source's)")
    ax.set_ylabel(f"valid {metric} (fixed subset)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{stem}-curves.png", dpi=130)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("plan", help="print each variant's size (no training)")
    q.add_argument("task", choices=TASKS)
    q.set_defaults(func=cmd_plan)
    r = sub.add_parser("run", help="lr sweep then training, each variant in turn")
    r.add_argument("task", choices=TASKS)
    r.add_argument("variants", nargs="*", help="default: all that fit")
    r.add_argument("--dense-steps", type=int, required=True, help="N: the dense phase")
    r.add_argument("--finetune-steps", type=int, required=True, help="M: after the transfer")
    r.add_argument("--root", default="runs/lightformer")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one more override for every run (e.g. train.device=cuda)")
    r.set_defaults(func=cmd_run)
    m = sub.add_parser("measure", help="(internal) one run in int8: test metrics and bytes")
    m.add_argument("run")
    m.set_defaults(func=cmd_measure)
    t = sub.add_parser("report", help="int8 of every finished run; table and plots")
    t.add_argument("task", choices=TASKS)
    t.add_argument("--root", default="runs/lightformer")
    t.add_argument("--out", default="benchmarks/results")
    t.set_defaults(func=cmd_report)
    for q_or_r in (q, r):
        q_or_r.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                            help="the dense model's shape (e.g. layers=6, d_model=96); every "
                                 "variant is sized against it")
    args = p.parse_args(argv)
    import yaml
    BASE.clear()
    EXTRA.clear()
    for item in getattr(args, "model", []):
        key, _, value = item.partition("=")
        BASE[key] = yaml.safe_load(value)
    EXTRA.extend(getattr(args, "set", []))
    args.func(args)


if __name__ == "__main__":
    main()
