#!/usr/bin/env bash
# Distillation of SmolLM2-135M compressed at keep 0.5 (benchmarks/results/distill.md).
#
#   bash benchmarks/distill.sh STUDENT_DIR NAME [OUT_ROOT]
#
# Three runs on one student, the same token budget each: KL distillation with only the
# low-rank parts trainable, KL with everything trainable, and LM-loss fine-tuning alone. The
# first run also measures the student before training and the teacher (--baseline).
# CPU settings of the recorded run (2 shared cores): one thread, 8 steps of 2 x 128 tokens.
# Override with STEPS, BATCH, SEQ, LR, WINDOWS, EVAL_EVERY; on a GPU raise STEPS and BATCH.
set -euo pipefail
student=$1; name=$2; root=${3:-runs/distill}
STEPS=${STEPS:-8}; BATCH=${BATCH:-2}; SEQ=${SEQ:-128}; LR=${LR:-1e-4}
WINDOWS=${WINDOWS:-4}; EVAL_EVERY=${EVAL_EVERY:-4}
common=(--teacher smollm2-135m --data brown --steps "$STEPS" --batch-size "$BATCH"
        --seq-len "$SEQ" --lr "$LR" --warmup 2 --eval-every "$EVAL_EVERY" --eval-batches 1
        --save-every "$STEPS" --eval-windows "$WINDOWS" --eval-seq-len 512 --quiet)
python=${PYTHON:-python}
run() {  # label, extra arguments
  local label=$1; shift
  /usr/bin/time -f "$name-$label cpu_user_s=%U cpu_sys_s=%S wall_s=%e" \
    "$python" -m layershare distill "$student" "${common[@]}" "$@" --out "$root/$name-$label"
}
run kl-lowrank --trainable lowrank --loss kl --baseline
run kl-all --trainable all --loss kl --no-baseline
run lm-all --trainable all --loss lm --no-baseline
