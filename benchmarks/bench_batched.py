"""Batched merges (layershare.bank): operators launched per training step, and step time.

Three variants of ``bench_core.py`` (same GPT-2, same batches): ``dense``; ``residual``
(K=3, r scaled, diagonal; each layer merges its own weight -- the path before the bank);
``batched`` (the same model with the bank: one merge per matrix type of the stack).

Operators per step: ``torch.profiler`` (CPU activity) records one training step (forward,
loss, backward, AdamW) after warm-up; counted are the ATen operators *dispatched from outside
any other ATen operator* (the calls that each become one or more kernel launches on a GPU;
an ``aten::linear`` that calls ``aten::addmm`` counts once). Reported in three parts --
forward + backward, optimizer step -- and also without view/metadata operators (``view``,
``t``, ``select``, ``unbind`` ...: no kernel on a GPU), which is the closer proxy for GPU
launches. The optimizer is counted twice: CPU AdamW's default for-loop (one set of ops per
parameter tensor; the residual model has 1.7x dense's tensors) and ``fused=True`` (one
kernel per dtype/device, what ``bench_core`` uses on CUDA and the trainer uses there).

Step time: ``--rounds`` interleaved rounds of ``--steps`` steps per variant (order rotated),
median over rounds of the per-round ratio to dense, as in ``bench_core``.

    PYTHONPATH=src python benchmarks/bench_batched.py [--size small] [--rounds 7]
Results: benchmarks/results/batched-<device>.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torch  # noqa: E402
from bench_core import PRESETS, Runner, device_name, interleaved, paired_ratio, write_atomic  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

VARIANTS = ("dense", "residual", "batched")
VIEWS = {"aten::view", "aten::_unsafe_view", "aten::t", "aten::transpose", "aten::select",
         "aten::slice", "aten::unbind", "aten::expand", "aten::reshape", "aten::unsqueeze",
         "aten::squeeze", "aten::permute", "aten::alias", "aten::detach", "aten::as_strided",
         "aten::diagonal", "aten::split", "aten::chunk", "aten::narrow", "aten::numpy_T",
         "aten::empty", "aten::empty_strided", "aten::lift_fresh", "aten::view_as",
         "aten::result_type", "aten::is_nonzero", "aten::item",
         "aten::_local_scalar_dense", "aten::detach_", "aten::resolve_conj", "aten::resolve_neg",
         "aten::set_", "aten::flatten", "aten::expand_as", "aten::resize_", "aten::_reshape_alias"}


def top_level_ops(prof, section: str) -> list[str]:
    """Names of ATen ops with no ATen ancestor, inside ``record_function(section)``."""
    names = []
    for e in prof.events():
        if not e.name.startswith("aten::"):
            continue
        parent, inside, nested = e.cpu_parent, False, False
        while parent is not None:
            if parent.name.startswith("aten::"):
                nested = True
                break
            inside |= parent.name == section
            parent = parent.cpu_parent
        # backward ops run on autograd's thread with no record_function parent: the
        # "backward" section covers them via their thread's evaluate_function frames
        if not nested and (inside or (section == "backward" and _in_autograd(e))):
            names.append(e.name)
    return names


def _in_autograd(e) -> bool:
    parent = e.cpu_parent
    while parent is not None:
        if parent.name.startswith("autograd::engine::evaluate_function"):
            return True
        parent = parent.cpu_parent
    return False


def count_ops(r: Runner, fused: bool) -> dict:
    """Top-level ATen ops of one training step, by part."""
    opt = torch.optim.AdamW(r.model.parameters(), lr=1e-4, fused=fused)
    for _ in range(2):  # AdamW state exists from the second step on
        _step(r, opt)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _step(r, opt, marked=True)
    out = {}
    for part in ("forward", "backward", "optimizer"):
        names = top_level_ops(prof, part)
        out[part] = len(names)
        out[part + "_compute"] = sum(n not in VIEWS for n in names)
    return out


def _step(r: Runner, opt, marked: bool = False):
    ctx = record_function if marked else (lambda _: _Null())
    r.model.train()
    with ctx("forward"):
        loss = r.fn(input_ids=r.x, labels=r.x).loss
    loss.backward()  # autograd's ops are found through their engine frames
    with ctx("optimizer"):
        opt.step()
        opt.zero_grad(set_to_none=True)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def render(meta, rows) -> str:
    p = meta["preset"]
    lines = [f"# Batched merges: operators and step time ({meta['device_type']}, size "
             f"{meta['size']})", "", f"- command: `{meta['command']}`", f"- date: {meta['date']}",
             f"- device: {meta['device']}; load (1 min) start / end: {meta['load'][0]:.2f} / "
             f"{meta['load'][1]:.2f}; torch {meta['torch']}; wall time of the run "
             f"{meta['wall_s']:.0f} s",
             f"- model: GPT2LMHeadModel {p['layers']} x {p['d']}, FFN {p['ffn']}, vocab "
             f"{p['vocab']}, batch {p['batch']} x {p['seq']}, fp32; residual K=3 "
             f"r={p['residual_rank']} diag, scratch init",
             f"- timing: {meta['rounds']} interleaved rounds x {meta['steps']} steps (AdamW "
             f"for-loop on CPU), median of per-round ratios", "",
             "| variant | fwd+bwd ops | x dense | fwd+bwd compute ops | x dense | AdamW ops "
             "(for-loop / fused) | step total, fused AdamW | x dense | step ms | "
             "speed x dense |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    d = rows[0]
    for r in rows:
        fb = r["ops"]["forward"] + r["ops"]["backward"]
        fbc = r["ops"]["forward_compute"] + r["ops"]["backward_compute"]
        dfb = d["ops"]["forward"] + d["ops"]["backward"]
        dfbc = d["ops"]["forward_compute"] + d["ops"]["backward_compute"]
        tot, dtot = fb + r["ops_fused"]["optimizer"], dfb + d["ops_fused"]["optimizer"]
        lines.append(f"| {r['variant']} | {fb} | {fb / dfb:.3f} | {fbc} | {fbc / dfbc:.3f} | "
                     f"{r['ops']['optimizer']} / {r['ops_fused']['optimizer']} | {tot} | "
                     f"{tot / dtot:.3f} | {r['step_ms']:.0f} | {r['speed_ratio']:.3f} |")
    lines += ["", "- ops: ATen operators dispatched at top level in one training step "
              "(torch.profiler); compute = without view/metadata ops (no GPU kernel). "
              "speed x dense: tokens/s ratio, higher is faster."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=PRESETS, default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    start = dt.datetime.now(dt.timezone.utc)
    torch.set_num_threads(args.threads)
    device, p = torch.device(args.device), dict(PRESETS[args.size])
    load0 = os.getloadavg()[0]
    runners = [Runner(v, p, device, False) for v in VARIANTS]
    counts = {r.name: (count_ops(r, fused=False), count_ops(r, fused=True)) for r in runners}
    for r in runners:
        for _ in range(p["warmup"]):
            r.train_step()
    times = interleaved(runners, "train_step", args.steps, args.rounds, "train")
    rows = [dict(variant=r.name, ops=counts[r.name][0], ops_fused=counts[r.name][1],
                 step_ms=statistics.median(times[r.name]) * 1e3,
                 speed_ratio=paired_ratio(times, r.name, inverse=True),
                 s_per_step=times[r.name]) for r in runners]
    env = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    meta = dict(command=env + " ".join(["python"] + sys.argv), date=start.isoformat(
        timespec="seconds"), device=device_name(device), device_type=device.type,
        size=args.size, torch=torch.__version__, load=(load0, os.getloadavg()[0]),
        preset=p, steps=args.steps, rounds=args.rounds,
        wall_s=(dt.datetime.now(dt.timezone.utc) - start).total_seconds())
    text = render(meta, rows)
    print("\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"batched-{device.type}" + ("" if args.size == "small" else f"-{args.size}")
    write_atomic(out / f"{stem}.md", text)
    write_atomic(out / f"{stem}.json", json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")
    print(f"wrote {out / stem}.md and .json")


if __name__ == "__main__":
    main()
