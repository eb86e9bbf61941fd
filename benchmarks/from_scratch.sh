#!/usr/bin/env bash
# Issue 3's side-by-side from-scratch comparison: every shipped config (plus the residual
# ablations), grouped by task, each group into a table and a Pareto plot. Runs already
# finished are reused, so an interrupted comparison resumes. Extra arguments are --set
# overrides for every run (e.g. the GPU sizes from the config headers).
#   bash benchmarks/from_scratch.sh runs/from-scratch [--set train.steps=300 ...]
set -euo pipefail
out=${1:?usage: from_scratch.sh OUT_DIR [--set key=value ...]}; shift
python recipes/compare.py --out "$out/lm" configs/lm-brown-dense.yaml configs/lm-brown-dense-small.yaml \
  configs/lm-brown-residual.yaml configs/ablations/lm-brown-residual-shared-only.yaml \
  configs/ablations/lm-brown-residual-shared-diag.yaml configs/ablations/lm-brown-residual-shared-lowrank.yaml \
  configs/lm-brown-lightformer.yaml configs/lm-brown-albert.yaml "$@"
python recipes/compare.py --out "$out/mt" configs/mt-deen-dense.yaml configs/mt-deen-residual.yaml \
  configs/mt-deen-lightformer.yaml "$@"
python recipes/compare.py --out "$out/cls" configs/cls-wordnet-dense.yaml configs/cls-wordnet-residual.yaml "$@"
