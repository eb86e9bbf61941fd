"""Where a training step's GPU time goes: dense vs. residual, kernel by kernel.

The side-by-side benchmark (``bench_core.py``) says *how much* slower the ResidualTransformer
trains than dense on the GPU; this says *where*: per variant and mode (eager, and compiled with
``--compile``), ``torch.profiler`` records ``--steps`` training steps after a warm-up (same
model, batch and optimizer as ``bench_core.py --size full``) and prints, per step, the wall
time, the GPU kernel time, the number of kernels launched, and the kernels taking the most
time. The profiler itself adds CPU work to every launch, so the wall time is also measured
without it (same number of steps, just before): wall time well above kernel time, without
the profiler, means the step is bound by launching kernels, not by running them. CUDA only.

    PYTHONPATH=src python benchmarks/profile_core.py [--compile] [--steps 3] [--top 12]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from bench_core import PRESETS, Runner  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402


def timed_steps(runner: Runner, steps: int) -> float:
    """Wall seconds per training step, device synchronised at both ends."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        runner.train_step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def profile_steps(runner: Runner, steps: int) -> tuple[float, float, list]:
    """Wall seconds per step without and with the profiler, and the profiler's per-kernel
    averages over ``steps`` steps."""
    for _ in range(4):  # warm-up: compilation, allocator, AdamW state
        runner.train_step()
    plain = timed_steps(runner, steps)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        profiled = timed_steps(runner, steps)
    kernels = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    return plain, profiled, kernels


def report(name: str, plain: float, profiled: float, kernels: list, steps: int,
           top: int) -> str:
    busy = sum(e.self_device_time_total for e in kernels) / steps / 1e3  # ms per step
    launches = sum(e.count for e in kernels) / steps
    lines = [f"## {name}: wall {plain * 1e3:.1f} ms/step ({profiled * 1e3:.1f} profiled), "
             f"kernels {busy:.1f} ms/step, {launches:.0f} kernels/step", "",
             "| kernel | calls/step | ms/step | % of kernel time |", "|---|---:|---:|---:|"]
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:top]:
        ms = e.self_device_time_total / steps / 1e3
        lines.append(f"| `{e.key[:90]}` | {e.count / steps:.0f} | {ms:.2f} | "
                     f"{100 * ms / busy:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compile", action="store_true", help="torch.compile each variant")
    ap.add_argument("--steps", type=int, default=3, help="profiled training steps")
    ap.add_argument("--top", type=int, default=12, help="kernels listed per variant")
    ap.add_argument("--variants", nargs="+", default=["dense", "residual"])
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_core: needs a CUDA device")
    device = torch.device("cuda")
    mode = "compiled" if args.compile else "eager"
    for variant in args.variants:
        runner = Runner(variant, PRESETS["full"], device, args.compile)
        plain, profiled, kernels = profile_steps(runner, args.steps)
        print(report(f"{variant}, {mode}", plain, profiled, kernels, args.steps, args.top)
              + "\n", flush=True)
        del runner
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
