#!/usr/bin/env bash
# The core-cuda-full protocol for batched merges (issue 15), one prepared run for a GPU
# machine: dense / residual (per-layer merges) / batched (layershare.bank), eager, compiled
# and compiled with CUDA graphs (mode="reduce-overhead"); kernel counts per step
# (profile_core.py, eager and compiled); operator counts (bench_batched.py); FSDP2 vs DDP on
# every GPU there is (bench_fsdp.py). Results land in benchmarks/results/.
#
#   bash benchmarks/gpu_batched.sh                 # GPU: SIZE=full (about 10-15 min on an H100)
#   SIZE=tiny DEVICE=cpu bash benchmarks/gpu_batched.sh   # CPU check of the script, ~3 min
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
SIZE=${SIZE:-full}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-benchmarks/results}
V="dense residual batched"
ROUNDS=()
[ "$SIZE" = tiny ] && ROUNDS=(--rounds 1 --steps 1)
FAILED=()
# one failing step (e.g. CUDA graphs refusing a model) must not cost the others' figures
step() { echo "== $*" >&2; "$@" || { echo "== FAILED: $*" >&2; FAILED+=("$*"); }; }

step $PY benchmarks/bench_core.py --size "$SIZE" --device "$DEVICE" --variants $V --out "$OUT" "${ROUNDS[@]}"
if [ "$DEVICE" = cuda ]; then  # (a CPU check skips compiling: minutes of C++ builds here)
  step $PY benchmarks/bench_core.py --size "$SIZE" --variants $V --compile --out "$OUT"
  step $PY benchmarks/bench_core.py --size "$SIZE" --variants $V --compile --mode reduce-overhead \
    --out "$OUT"
  step $PY benchmarks/profile_core.py --variants $V --steps 3 > "$OUT/profile-cuda-batched.md"
  step $PY benchmarks/profile_core.py --variants $V --steps 3 --compile \
    > "$OUT/profile-cuda-batched-compile.md"
fi
step $PY benchmarks/bench_batched.py --size "$SIZE" --device "$DEVICE" --out "$OUT" "${ROUNDS[@]}"
N=1
if [ "$DEVICE" = cuda ]; then
  N=$($PY -c "import torch; print(torch.cuda.device_count())")
else
  N=2
fi
step env OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc_per_node="$N" \
  benchmarks/bench_fsdp.py --size "$SIZE" --out "$OUT" "${ROUNDS[@]}"
if [ ${#FAILED[@]} -gt 0 ]; then printf 'failed: %s\n' "${FAILED[@]}" >&2; exit 1; fi
