#!/usr/bin/env bash
# The speech-from-scratch protocol of benchmarks/results/speech-scratch.md at GPU size: ten
# times the audio (espeak-asr --hours 200) and twice the width (d_model 192, ffn 768), every
# variant with its learning-rate sweep, then the table and plots.
#
#   bash benchmarks/gpu_speech.sh            # needs espeak-ng + diatheke to prepare the data
#
# The data is made where it runs: `layershare data prepare espeak-asr --hours 200` speaks
# 200 h with espeak-ng (about 40 CPU-minutes) and writes ~12 GB of float16 features. The
# device machine lent to this project has no package registry and carries at most 64 MiB of
# files, so it can neither speak the corpus nor receive it: run this on a GPU machine that
# has Debian's espeak-ng and diatheke (apt-get install espeak-ng diatheke).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
ROOT=${ROOT:-runs/asr-gpu}
DATA=${LAYERSHARE_DATA:-data}
$PY -m layershare.cli data prepare espeak-asr --hours 200 --dir "$DATA"
# every width doubled (the narrow model's too: 54 -> 108), ten times the frames per step
$PY benchmarks/speech_scratch.py run dense12 residual dense4 narrow12 tied2 dense6 \
  res-shared res-shared-diag res-shared-lowrank --root "$ROOT" --data-dir "$DATA" \
  --width-scale 2 --set train.bucket_frames=60000 --set train.device=cuda
$PY benchmarks/speech_scratch.py report --root "$ROOT" --data-dir "$DATA" \
  --out benchmarks/results/gpu
