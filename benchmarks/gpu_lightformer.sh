#!/usr/bin/env bash
# LightFormer's translation experiment at the paper's size (Transformer base, 6+6 layers,
# d_model 512, 8 heads) on libreoffice-de-en: the dense model, then every variant of
# benchmarks/lightformer.py (SVD transfer into shared low rank + fine-tuning, dense for the
# same total steps, transfer without sharing, sharing without transfer, ResidualTransformer,
# shallow and narrow dense), each with its learning-rate sweep, on one GPU.
#
#   bash benchmarks/gpu_lightformer.sh      # DENSE_STEPS=N FINETUNE_STEPS=M to change
#
# The corpus is small (6 MB prepared): prepare it here (`layershare data prepare
# libreoffice-de-en --dir data`) and carry data/libreoffice-de-en to a device machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
ROOT=${ROOT:-runs/lightformer-gpu}
DATA=${LAYERSHARE_DATA:-data}
$PY -m layershare.cli data prepare libreoffice-de-en --dir "$DATA"
$PY benchmarks/lightformer.py run mt --root "$ROOT" \
  --dense-steps "${DENSE_STEPS:-20000}" --finetune-steps "${FINETUNE_STEPS:-10000}" \
  --model layers=6 --model d_model=512 --model heads=8 --model ffn=2048 \
  --set data.dir="$DATA" --set train.device=cuda --set train.batch_size=128 \
  --set train.warmup=4000 --set train.eval_every=1000 --set train.save_every=1000 \
  --set eval.test_limit=0
