"""LightFormer where the paper lives: dense -> SVD weight transfer into shared low rank ->
fine-tuning, against every baseline that separates what each part buys.

    python benchmarks/lightformer.py plan mt          # the variants' sizes, nothing trained
    OMP_NUM_THREADS=1 python benchmarks/lightformer.py run mt --dense-steps N --finetune-steps M
    python benchmarks/lightformer.py report mt        # int8 of each run, table and plots

Tasks (their base configs): ``mt`` translation De->En (configs/mt-deen-dense.yaml), ``sum``
summarisation (configs/sum-debian-dense.yaml), ``cls`` classification
(configs/cls-wordnet-dense.yaml). Variants, every one with its learning rate chosen by
short runs (a fifth of its steps, valid loss) from three values (``--lrs``, default
``LRS``), grown past an edge of them where the best sits on one (protocol.py):

* ``dense``: the reference, ``N`` steps (trained to convergence: the caller picks ``N`` from
  a dense run whose valid metric is flat over its last 20%);
* ``lightformer``: ``dense``'s weights (``model.init_from``) transferred by SVD into low-rank
  factors whose basis groups of ``K`` layers share (``share.method: lowrank``, ``init:
  mean``), the largest rank with >= 3.8x fewer layer parameters, then ``M`` steps;
* ``dense-long``: dense for ``N + M`` steps, so extra training is not mistaken for the method;
  the same model, so it trains at the rate ``dense``'s sweep chose rather than sweeping again;
* ``transfer-k1``: the same transfer without sharing (K=1) at no more layer parameters;
* ``shared-scratch``: the same shared low rank without transfer, ``N + M`` steps;
* ``residual``: ResidualTransformer from scratch at no more layer parameters, ``N + M``;
* ``shallow`` and ``narrow``: dense models of no more unique layer parameters, ``N + M``.

Every run warms up for a tenth of its steps and evaluates twenty times (:func:`schedule`);
a full run decodes the first 300 valid pairs at each evaluation (the valid BLEU / ROUGE-L
that picks its best checkpoint and judges convergence) and the whole test split at its end.
A run already finished (its ``results.json``) is skipped, not tested again. The report
side (table, plots, convergence) is report_lightformer.py.
Parameter counts come from ``layershare.count`` on the built models (:func:`plan`), never from
a formula typed here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import CONFIGS, grown_sweep, sweep_loss, train  # noqa: E402
from report_lightformer import cmd_report  # noqa: E402  (its report side)

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
        # the dense model itself, trained longer: its rate is the dense sweep's (lr_from)
        "dense-long": {"share": None, "model": {}, "long": True, "lr_from": "dense"},
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
        if (root / name / "results.json").is_file():  # finished: not even re-tested
            print(f"{name}: finished in {root / name}; skipped", flush=True)
            continue
        steps = m if v.get("transfer") else n + m if v.get("long") else n
        sets = overrides(v) + schedule(steps)
        if v.get("transfer"):
            sets.append(f"model.init_from={root / 'dense'}")
        lr = tuned_lr(root, v["lr_from"]) if v.get("lr_from") else sweep(
            config, name, sets, steps, root, args.lrs)
        train(config, sets, root / name, [f"train.lr={lr}"] + FULL + EXTRA)


def tuned_lr(root: Path, name: str) -> float:
    """The rate ``name``'s sweep chose (``sweep/NAME.json``); an error naming the missing
    run when that sweep has not run yet. Looked up when the variant's turn comes, not
    before the first: a job may list it after a long variant while dense's sweep runs in
    another process."""
    path = root / "sweep" / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run the {name} variant first (its rate is reused)")
    return json.loads(path.read_text())["best"]


def schedule(steps: int, evals: int = EVALS) -> list[str]:
    """A run of ``steps``: warm-up a tenth of it (so a sweep's short run is the full run's
    schedule compressed, whatever its shape), ``evals`` evaluations, a checkpoint every
    half evaluation interval."""
    every = max(steps // evals, 1)
    return [f"train.steps={steps}", f"train.warmup={steps // 10}",
            f"train.eval_every={every}", f"train.save_every={max(every // 2, 1)}"]


def sweep(config: str, name: str, sets: list[str], steps: int, root: Path,
          lrs=LRS) -> float:
    """The rate whose run of a fifth of ``steps`` ends with the lowest valid loss: ``lrs``,
    grown past an edge where the best sits on one (protocol.grown_sweep)."""
    short = max(steps // SWEEP_FRACTION, 1)
    base = [s for s in sets if s.split("=")[0] not in SCHEDULE_KEYS]
    base += schedule(short, evals=2) + [
        "eval.test_limit=1", "eval.valid_decode=0"]  # a sweep reads its valid loss

    def score(lr: float) -> float:
        run = root / "sweep" / f"{name}-lr{lr:g}"  # the short schedule wins over EXTRA's
        return sweep_loss(run, lambda: train(config, EXTRA + base, run, [f"train.lr={lr}"]))

    scores = grown_sweep(tuple(lrs), score)
    best = min(scores, key=scores.get)
    (root / "sweep" / f"{name}.json").write_text(json.dumps(
        {"valid_loss_by_lr": {f"{k:g}": v for k, v in scores.items()}, "best": best}) + "\n")
    return best


# -- measuring (report_lightformer.py reports) ---------------------------------------------
def cmd_measure(args) -> None:
    """(internal) One finished run in int8 (weight-only, per-row: layershare.deploy.int8): the
    test metrics and the bytes of its layer stacks and whole model, fp32 and int8; one JSON
    line. Its own process, one thread, so runs do not share state."""
    import torch

    from layershare.cli.common import run_dir
    from layershare.deploy.int8 import fp32_bytes, int8_bytes, quantize_int8_
    from layershare.train.evaluate import split_metrics

    torch.set_num_threads(1)
    # a run this script trained: its data is read where its config says
    cfg, model, device, autocast, build_task = run_dir(Path(args.run), read_data=True,
                                                       trust_config=True)
    task = build_task(cfg, Path(args.run), progress=False, setup=False)
    stacks = torch.nn.ModuleList([getattr(model, part).layers for part in ("encoder", "decoder")
                                  if hasattr(model, part)])
    out = {"layer_bytes_fp32": fp32_bytes(stacks), "layer_bytes_int8": int8_bytes(stacks),
           "model_bytes_fp32": fp32_bytes(model), "model_bytes_int8": int8_bytes(model)}
    quantize_int8_(model)
    out.update(split_metrics(task, model, "test", device, None, autocast))
    print(json.dumps(out), flush=True)


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
    r.add_argument("--lrs", type=float, nargs="+", default=list(LRS), metavar="LR",
                   help="the sweep's starting rates (it grows past an edge)")
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
    if getattr(args, "lrs", None) is not None:
        if min(args.lrs) <= 0:
            raise SystemExit(f"--lrs: every rate must be > 0, got {args.lrs}")
        args.lrs = sorted(set(args.lrs))  # a repeated rate would stretch the grid's growth
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
