#!/usr/bin/env bash
# Issue 4's comparison: Dynamic Layer Tying against dense models (12 layers, and 6 and 2 layers
# for the unique sizes tying reaches), static tying (sequence and cycle-rev, 6 parameter sets)
# and random tying, all at equal steps on Brown; a table (test perplexity, unique layers and
# parameters, tokens/s, peak memory over the run and over its last 10%) and a Pareto plot.
# Extra arguments go to recipes/compare.py: --jobs N, --set key=value (for every run).
#   bash benchmarks/dlt.sh runs/dlt [--jobs 8] [--set train.steps=3000 ...]
set -euo pipefail
out=${1:?usage: dlt.sh OUT_DIR [--jobs N] [--set key=value ...]}; shift
python3 recipes/compare.py --out "$out" configs/lm-brown-dense.yaml configs/lm-brown-dense-6l.yaml \
  configs/lm-brown-dense-small.yaml configs/lm-brown-tied-sequence.yaml \
  configs/lm-brown-tied-cycle-rev.yaml configs/lm-brown-dlt.yaml \
  configs/ablations/lm-brown-dlt-neg-log-ppl.yaml configs/ablations/lm-brown-dlt-random.yaml "$@"
