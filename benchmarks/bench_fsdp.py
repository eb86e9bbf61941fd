"""FSDP2 vs DDP training speed and memory, dense vs residual (run under torchrun).

The models of ``bench_core.py`` (GPT-2, ``--size``), each rank a slice of the batch
(``batch`` sequences per rank). ``ddp``: DistributedDataParallel. ``fsdp``: the trainer's
FSDP2 wrapping (``layershare.train.fsdp.shard``: each group of layers sharing tensors one
unit, then the root; bf16 parameters / fp32 reduction on CUDA, fp32 on CPU). Each variant
and wrapping: warm-up, then ``--rounds`` interleaved rounds of ``--steps`` steps; reported
per rank-0: median tokens/s (all ranks), the ratio to dense-DDP within a round, and the
CUDA allocator's peak per rank.

    torchrun --nproc_per_node=N benchmarks/bench_fsdp.py [--size full] [--rounds 3]
    # CPU check of the script: OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 \\
    #     benchmarks/bench_fsdp.py --size tiny --out /tmp/fsdp
Results: benchmarks/results/fsdp-<device>-<size>-<N>.md and .json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from bench_core import PRESETS, build, device_name, write_atomic  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from layershare.train.fsdp import shard  # noqa: E402


class Run:
    def __init__(self, variant, wrap, p, device):
        self.name, self.device = f"{variant}-{wrap}", device
        model = build(variant, p, device).train()
        if wrap == "fsdp":
            self.model = self.fn = shard(model, bf16=device.type == "cuda")
        else:
            self.model = model
            self.fn = DistributedDataParallel(model, device_ids=[device.index]
                                              if device.type == "cuda" else None)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4,
                                     fused=device.type == "cuda")
        g = torch.Generator().manual_seed(1 + dist.get_rank())
        self.x = torch.randint(p["vocab"], (p["batch"], p["seq"]), generator=g).to(device)

    def step(self):
        ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
               else contextlib.nullcontext())
        with ctx:
            loss = self.fn(input_ids=self.x, labels=self.x).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def timed(self, n):
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(n):
            self.step()
        sync()
        dist.barrier()
        return (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=PRESETS, default="full")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["dense", "residual"])
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    world, main_rank = dist.get_world_size(), dist.get_rank() == 0
    p = dict(PRESETS[args.size])
    runs = [Run(v, w, p, device) for v in args.variants for w in ("ddp", "fsdp")]
    for r in runs:
        for _ in range(max(2, p["warmup"])):
            r.step()
    times = {r.name: [] for r in runs}
    for k in range(args.rounds):
        for r in runs[k % len(runs):] + runs[:k % len(runs)]:
            times[r.name].append(r.timed(args.steps))
    peaks = {}
    for r in runs:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            r.step()
            torch.cuda.synchronize()
            peaks[r.name] = torch.cuda.max_memory_allocated() / 2**20
    ntok = p["batch"] * p["seq"] * world
    base = times[runs[0].name]
    rows = [dict(run=r.name, tok_s=ntok / statistics.median(times[r.name]),
                 ratio=statistics.median(b / t for t, b in zip(times[r.name], base)),
                 peak_mib=peaks.get(r.name), s_per_step=times[r.name]) for r in runs]
    if main_rank:
        lines = [f"# FSDP2 vs DDP: {device_name(device)} x {world}, size {args.size}", "",
                 f"- command: `torchrun --nproc_per_node={world} {' '.join(sys.argv)}`",
                 f"- torch {torch.__version__}; {args.rounds} interleaved rounds x "
                 f"{args.steps} steps; batch {p['batch']} x {p['seq']} per rank", "",
                 "| run | tokens/s (all ranks) | x " + runs[0].name + " | peak MiB (rank 0) |",
                 "|---|---:|---:|---:|"]
        for r in rows:
            peak = f"{r['peak_mib']:,.0f}" if r["peak_mib"] is not None else "-"
            lines.append(f"| {r['run']} | {r['tok_s']:,.0f} | {r['ratio']:.3f} | {peak} |")
        text = "\n".join(lines) + "\n"
        print(text)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"fsdp-{device.type}-{args.size}-{world}"
        write_atomic(out / f"{stem}.md", text)
        write_atomic(out / f"{stem}.json", json.dumps(rows, indent=2) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
