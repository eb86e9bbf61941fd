#!/usr/bin/env bash
# Make ./.venv with the CPU build of torch and layershare (editable, with test + speech + onnx
# extras).
# LAYERSHARE_EXTRAS adds extras (CI: whisper, the 71 MB real Whisper tiny.en).
# Idempotent: a second run installs nothing new. Used by demo.sh, test.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
# torch first and pinned: this machine has the CPU wheel of 2.13.0 on local disk; a bare
# "torch" requirement would pull a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || python -m pip install -q --disable-pip-version-check torch==2.13.0
# -c constraints.txt: the versions the suite passed with (a fresh machine would otherwise get
# whatever transformers is newest today); pyproject's ranges stay open for library users.
python -m pip install -q --disable-pip-version-check -c constraints.txt \
  -e ".[test,speech,onnx${LAYERSHARE_EXTRAS:+,$LAYERSHARE_EXTRAS}]"
