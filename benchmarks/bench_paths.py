"""ResidualLinear's two inference paths, one layer at a time: where they cross, and what the
factored path's fusion buys at decode.

1. Decode step (T = 1 row), per matrix shape of the GPT-2 benchmark model (d=768, r=32): the
   dense layer ``F.linear(x, W, b)`` against the factored path written naively
   (``F.linear(x, S, b) + F.linear(F.linear(x, B), A) + x * d``), fused as ResidualLinear
   runs it (two ``addmm`` + one ``addcmul``), ``[S; B]`` stacked per call (one matmul, but the
   stack copies S), ``[S; B]`` stacked once in advance (one matmul; costs a dense copy of S per
   layer, shown for reference only) and the merged path (merge + one matmul).
2. Crossover: for T in a sweep, the merged path (``F.linear(x, S + A B + diag(d), b)``) against
   the factored one; reported per shape: the smallest T where merged is faster, and that T as
   a multiple of the FLOP break-even ``T* = m n / (m + n)`` -- the factor behind
   ``residual.MERGE_CROSSOVER``.

Timings are medians over interleaved rounds (every variant timed in turn within a round, the
order rotated), fp32, no grad. With one thread (``--threads 1``) the clock is the calling
thread's CPU time (``time.thread_time``): all the work runs on that thread, and time the
scheduler gives other processes of a shared machine does not count. With more threads it is
wall time (the work runs on threads the clock of one cannot see).

    PYTHONPATH=src python benchmarks/bench_paths.py [--rounds 7] [--out benchmarks/results/paths.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from layershare.residual import ResidualLinear

SHAPES = [(768, 768), (2304, 768), (3072, 768), (768, 3072),  # GPT-2 d=768: o, c_attn, fc, proj
          (576, 576), (1536, 576), (576, 1536), (192, 576)]  # SmolLM2-135M: q/o, up, down, k/v
TOKENS = [1, 8, 32, 64, 128, 256, 384, 512, 768, 1024]


def _layer(m: int, n: int, rank: int) -> ResidualLinear:
    layer = ResidualLinear(nn.Parameter(torch.randn(m, n) / n ** 0.5), rank,
                           bias=torch.randn(m)).eval()
    with torch.no_grad():
        layer.lora_A.normal_(std=0.02)
        layer.diag.normal_(std=0.02)
    return layer


CLOCK = time.perf_counter


def _time(fn, reps: int) -> float:
    start = CLOCK()
    for _ in range(reps):
        fn()
    return (CLOCK() - start) / reps


def interleaved(fns: dict, reps: int, rounds: int) -> dict[str, float]:
    """Median seconds per call of each function over ``rounds`` rotated rounds."""
    for fn in fns.values():
        fn()
    names, times = list(fns), {k: [] for k in fns}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(_time(fns[name], reps))
    return {k: statistics.median(v) for k, v in times.items()}


def decode_variants(layer: ResidualLinear) -> dict:
    s, a, b, d, bias = layer.shared, layer.lora_B, layer.lora_A, layer.diag, layer.bias
    m, n = s.shape
    dense_w = layer.merged_weight()
    stacked_once = torch.cat([s, b])
    x = torch.randn(1, n)

    def naive():
        y = F.linear(x, s, bias) + F.linear(F.linear(x, b), a)
        k = d.shape[0]
        return torch.cat([y[:, :k] + x[:, :k] * d, y[:, k:]], -1)

    def stacked(sb):
        z = F.linear(x, sb)
        return torch.addmm(z[:, :m] + bias, z[:, m:], a.t())

    return {"dense": lambda: F.linear(x, dense_w, bias), "naive": naive,
            "fused": lambda: layer._factored(x),
            "stacked per call": lambda: stacked(torch.cat([s, b])),
            "stacked once": lambda: stacked(stacked_once),
            "merged": lambda: F.linear(x, layer.merged_weight(), bias)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/paths.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.thread_time if args.threads == 1 else time.perf_counter
    clock = "thread CPU time" if args.threads == 1 else "wall time"
    torch.manual_seed(0)
    lines = [f"# ResidualLinear paths ({args.threads} threads, fp32, r={args.rank}, "
             f"median of {args.rounds} interleaved rounds, {clock})", "",
             "Command: `PYTHONPATH=src python benchmarks/bench_paths.py "
             f"--rounds {args.rounds} --rank {args.rank} --threads {args.threads}`", "",
             "## Decode step (1 row): microseconds per call, ratio to dense", ""]
    names = list(decode_variants(_layer(8, 8, 2)))
    lines += ["| m x n | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    with torch.no_grad():
        for m, n in SHAPES[:4]:
            t = interleaved(decode_variants(_layer(m, n, args.rank)), 200, args.rounds)
            lines.append(f"| {m} x {n} | " + " | ".join(
                f"{t[k] * 1e6:.0f} ({t[k] / t['dense']:.2f}x)" for k in names) + " |")
            print(lines[-1], flush=True)
        lines += ["", "## Crossover: merged / factored time per call", "",
                  "| m x n | T* = mn/(m+n) | " + " | ".join(f"T={t}" for t in TOKENS)
                  + " | merged wins from T | as multiple of T* |",
                  "|---" * (len(TOKENS) + 4) + "|"]
        factors = []
        for m, n in SHAPES:
            layer = _layer(m, n, args.rank)
            ratios = []
            for tokens in TOKENS:
                x = torch.randn(tokens, n)
                t = interleaved({"merged": lambda: F.linear(x, layer.merged_weight(), layer.bias),
                                 "factored": lambda: layer._factored(x)},
                                max(2, 256 // tokens), args.rounds)
                ratios.append(t["merged"] / t["factored"])
            wins = [tok for tok, r in zip(TOKENS, ratios) if r < 1.0]
            # first T from which merged stays ahead for the rest of the sweep
            start = next((tok for i, tok in enumerate(TOKENS)
                          if all(r < 1.0 for r in ratios[i:])), None)
            tstar = m * n / (m + n)
            factor = None if start is None else start / tstar
            if factor is not None:
                factors.append(factor)
            lines.append(f"| {m} x {n} | {tstar:.0f} | " + " | ".join(f"{r:.2f}" for r in ratios)
                         + f" | {start if start else '> ' + str(TOKENS[-1])} | "
                         + (f"{factor:.2f}" if factor is not None else "-") + " |")
            print(lines[-1], flush=True, end="" if wins else " (merged never faster)\n")
            if wins:
                print()
    if factors:
        lines += ["", f"Median factor over shapes: {statistics.median(factors):.2f} "
                  f"(min {min(factors):.2f}, max {max(factors):.2f})."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
