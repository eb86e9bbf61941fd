#!/usr/bin/env bash
# Run the test suite in ./.venv (created on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
# lint and import order first (pyproject's [tool.ruff]): a finding fails the run
python -m ruff check --quiet .
# -rs: every skipped test is listed with its reason at the end of the run
python -m pytest -rs "$@"
