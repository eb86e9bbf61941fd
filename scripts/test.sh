#!/usr/bin/env bash
# Run the test suite in ./.venv (created on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pytest "$@"
