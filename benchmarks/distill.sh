#!/usr/bin/env bash
# Distillation of SmolLM2-135M compressed at keep 0.5 (benchmarks/results/distill.md).
#
#   bash benchmarks/distill.sh STUDENT_DIR NAME [OUT_ROOT]
#
# Three runs on one student, the same token budget each: KL distillation with only the
# low-rank parts trainable, KL with everything trainable, and LM-loss fine-tuning alone. The
# first run also measures the student before training and the teacher (--baseline).
# CPU settings of the recorded run (2 cores, one stream per student side by side, one thread
# each): 100 steps of 4 x 128 tokens (51,200 tokens, ~20 minutes for the slower student).
# Override with STEPS, BATCH, SEQ, LR, WARMUP, WINDOWS, EVAL_EVERY, EVAL_BATCHES; on a GPU
# raise STEPS and BATCH.
set -euo pipefail
student=$1; name=$2; root=${3:-runs/distill}
STEPS=${STEPS:-100}; BATCH=${BATCH:-4}; SEQ=${SEQ:-128}; LR=${LR:-1e-4}; WARMUP=${WARMUP:-10}
WINDOWS=${WINDOWS:-16}; EVAL_EVERY=${EVAL_EVERY:-10}; EVAL_BATCHES=${EVAL_BATCHES:-4}
common=(--teacher smollm2-135m --data brown --steps "$STEPS" --batch-size "$BATCH"
        --seq-len "$SEQ" --lr "$LR" --warmup "$WARMUP" --eval-every "$EVAL_EVERY"
        --eval-batches "$EVAL_BATCHES"
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
