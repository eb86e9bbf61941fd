"""Post-training compression of a pretrained LM, every method at every budget, one protocol.

    python benchmarks/compress_pretrained.py --out runs/pretrained [--keeps 0.8,0.6,0.5]
        [--variants svd-whitened,res2-seq,...] [--calib-tokens 8192] [--windows 16]

The model is loaded once; each variant compresses a fresh copy (layershare.compress.compress,
exactly what ``layershare compress`` runs), then its perplexity is measured on the Brown test
split (non-overlapping windows of --seq-len tokens, the first --windows of them) and the
calibration text is the Brown valid split. An encoder (``--model minilm-l6``) is measured by
the cosine of its sentence embeddings to the original's on the first --sentences Brown test
sentences and by a wordnet-supersense logistic-regression probe (evaluate/fidelity.py).
Every finished variant is appended to OUT/results.jsonl at once, so a killed run resumes
where it stopped. Writes OUT/results.md (table) and OUT/pareto.png (perplexity against the
stack's matrix parameters kept).
The resident-set peak during each compression is logged too, but in a process that reuses
freed memory it understates; benchmarks/compress_memory.py measures memory in a fresh process.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import threading
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from layershare.compress import compress  # noqa: E402
from layershare.data.windows import read_text, token_windows  # noqa: E402
from layershare.errors import LayershareError  # noqa: E402
from layershare.evaluate.fidelity import embedding_cosine, probe_accuracy, probe_subsets  # noqa: E402
from layershare.evaluate.perplexity import lm_quality  # noqa: E402
from layershare.formats.hub import auto_tokenizer, from_local, quiet_transformers  # noqa: E402

# name -> (label, compress options); calib False = data-free
VARIANTS = {
    # target local: SVD-LLM's metric ||(W - W') X~^T||; original: ||W X^T - W' X~^T|| (whiten.py)
    "svd-whitened": ("per-layer SVD, whitened (SVD-LLM)",
                     dict(method="lowrank", group_size=1, target="local")),
    "res2-seq": ("residual K=2, whitened, sequential",
                 dict(method="residual", group_size=2, target="local")),
    "bs2": ("Basis Sharing K=2, whitened", dict(method="lowrank", group_size=2, target="local")),
    "svd-datafree": ("per-layer SVD, data-free", dict(method="lowrank", group_size=1, calib=False)),
    "res2-datafree": ("residual K=2, data-free",
                      dict(method="residual", group_size=2, calib=False)),
    "tied": ("tied (group mean)", dict(method="tied", calib=False)),
    "res3-seq": ("residual K=3, whitened, sequential",
                 dict(method="residual", group_size=3, target="local")),
    "bs4": ("Basis Sharing K=4, whitened", dict(method="lowrank", group_size=4, target="local")),
    "res2-nonseq": ("residual K=2, whitened, not sequential",
                    dict(method="residual", group_size=2, sequential=False)),
    "svd-nonseq": ("per-layer SVD, whitened, not sequential",
                   dict(method="lowrank", group_size=1, sequential=False)),
    "res3-datafree": ("residual K=3, data-free",
                      dict(method="residual", group_size=3, calib=False)),
    "res3-nonseq": ("residual K=3, whitened, not sequential",
                    dict(method="residual", group_size=3, sequential=False)),
    "svd-spectrum": ("per-layer SVD, whitened, spectrum allocation",
                     dict(method="lowrank", group_size=1, allocate="spectrum", target="local")),
    "svd-orig": ("per-layer SVD, whitened, original target",
                 dict(method="lowrank", group_size=1, target="original")),
    "bs2-orig": ("Basis Sharing K=2, whitened, original target",
                 dict(method="lowrank", group_size=2, target="original")),
    "res2-orig": ("residual K=2, whitened, original target",
                  dict(method="residual", group_size=2, target="original")),
    "res3-orig": ("residual K=3, whitened, original target",
                  dict(method="residual", group_size=3, target="original")),
    "svd-orig-spectrum": ("per-layer SVD, original target, spectrum allocation",
                          dict(method="lowrank", group_size=1, target="original",
                               allocate="spectrum")),
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    """Highest resident set size seen while the block runs (sampled by a thread)."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--keeps", default="0.8,0.6,0.5")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--calib-tokens", type=int, default=8192)
    ap.add_argument("--calib-seq-len", type=int, default=256)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--sentences", type=int, default=500, help="encoders: cosine sentences")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quiet_transformers()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "results.jsonl"
    done = {(r["variant"], r["keep_asked"])
            for r in map(json.loads, log.read_text().splitlines())} if log.exists() else set()

    tokenizer = auto_tokenizer(args.model)
    test = token_windows(tokenizer, read_text("brown", "test"), args.seq_len, args.windows)
    calib_windows = token_windows(tokenizer, read_text("brown", "valid"), args.calib_seq_len,
                                  args.calib_tokens // args.calib_seq_len)
    calib = [{"input_ids": calib_windows[i:i + 8]} for i in range(0, len(calib_windows), 8)]
    dense = from_local(args.model)
    if hasattr(dense, "get_output_embeddings") and dense.get_output_embeddings() is not None:
        def quality(model):
            return lm_quality(model, test, progress=True)
    else:  # an encoder: fidelity of its sentence embeddings, and a probe
        from layershare.data import load_splits
        sentences = read_text("brown", "test")[: args.sentences]
        subsets = probe_subsets(load_splits("wordnet-supersense", progress=False))

        def quality(model):
            return {"cosine": embedding_cosine(model, dense, tokenizer, sentences),
                    "probe_accuracy": probe_accuracy(model, tokenizer, subsets),
                    "sentences": len(sentences)}
    if ("original", None) not in done:
        q = quality(dense)
        _append(log, {"variant": "original", "label": "original", "keep_asked": None, "keep": 1.0,
                      **q})
    for keep in [float(k) for k in args.keeps.split(",")]:
        for name in args.variants.split(","):
            if (name, keep) in done:
                continue
            label, options = VARIANTS[name]
            options = dict(options)
            use_calib = options.pop("calib", True)
            model = copy.deepcopy(dense)
            row = {"variant": name, "label": label, "keep_asked": keep,
                   "calib_tokens": args.calib_tokens if use_calib else 0}
            try:
                with PeakRSS() as mem:
                    result = compress(model, calib if use_calib else None, keep=keep,
                                      progress=True, **options)
            except LayershareError as exc:
                _append(log, {**row, "error": str(exc)})
                print(f"{name} keep {keep}: {exc}", flush=True)
                continue
            q = quality(model)
            _append(log, {**row, "keep": result.keep, "compress_seconds": result.seconds,
                          "compress_peak_rss_above_start": mem.peak - mem.base,
                          "errors": {k: [m, w] for k, m, w in result.error_table()}, **q})
            print(f"{name} keep {keep}: kept {result.keep:.3f}, {q}, {result.seconds:.0f} s",
                  flush=True)
            del model
    from report_pretrained import write_report  # benchmarks/report_pretrained.py
    write_report(log, args.out, args)


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
