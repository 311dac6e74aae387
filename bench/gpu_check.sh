#!/usr/bin/env bash
# The GPU check: one prepared run for a machine with a CUDA GPU, under one time limit.
#
#   1. tests: test/core/test_cuda.py (CUDA fp32 = CPU detections, fp16 / bf16 AP and masks, YOLACT++
#      deformable convolutions in fp16 / bf16, batches, onnxruntime's CUDA provider when installed)
#      plus the precision and predictor tests on that machine;
#   2. parity: bench/parity.py --device cuda (fp16 / bf16 / onnxruntime against torch fp32 on the
#      GPU, and the CPU's fp32 against the GPU's, on random official-format checkpoints + the
#      shipped model);
#   3. model: bench/model.py --device cuda (end to end per frame for torch fp32 / fp16 / bf16 and
#      Mask R-CNN, interleaved; the shipped model's mask AP per configuration on 25 scenes).
#
# Results (JSON, logs, nvidia-smi) go to $OUT (default bench/results/gpu); summary.txt lists each
# step's exit code. Without a CUDA device it measures nothing and exits 3, and the README's GPU
# figures stay "not measured".
#
# Needs python3 with torch + torchvision (CUDA build), numpy, opencv, scipy, pyyaml, pycocotools;
# wheels missing on the GPU machine can travel in .whl/ (installed into /tmp/site first).
#
# Usage: bash bench/gpu_check.sh [LIMIT_S]     (default 480: the whole check, all steps together)
#        GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh 120   checks the script's own mechanics on a
#        machine without a GPU (the CUDA tests skip; it measures the CPU, not a GPU)
set -uo pipefail
cd "$(dirname "$0")/.."
LIMIT=${1:-480}
OUT=${OUT:-bench/results/gpu}
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
if compgen -G '.whl/*.whl' > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD/instseg_ros${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)'; then
  echo "gpu_check: no CUDA device here; nothing measured (the GPU figures stay 'not measured')" \
    | tee -a "$OUT/summary.txt" >&2
  exit 3
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia_smi.csv" 2>&1 || true
deadline=$(( $(date +%s) + LIMIT ))
status=0

step() {  # step NAME SHARE_OF_WHAT_IS_LEFT_PERCENT COMMAND...
  local name=$1 share=$2 left limit rc
  shift 2
  left=$(( deadline - $(date +%s) ))
  limit=$(( left * share / 100 ))
  if [ "$limit" -lt 20 ]; then
    echo "$name: skipped, ${left} s left" | tee -a "$OUT/summary.txt"
    status=1
    return
  fi
  echo "== $name (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc ($(( $(date +%s) - deadline + left )) s)" | tee -a "$OUT/summary.txt"
  tail -n 5 "$OUT/$name.log"
  [ "$rc" -eq 0 ] || status=1
}

step tests 40 "$PY" -m pytest -q -p no:cacheprovider -rs instseg_ros/test/core/test_cuda.py \
  instseg_ros/test/core/test_precision.py instseg_ros/test/core/test_predictor.py
step parity 45 "$PY" bench/parity.py --device "$DEVICE" --scenes 3 \
  --presets shipped yolact_resnet50 yolact_base yolact_plus_base --out "$OUT/parity_$DEVICE.json"
step model 100 "$PY" bench/model.py --device "$DEVICE" --rounds 10 --threads 4 --ap-scenes 25 \
  --out "$OUT/model_$DEVICE.json"
exit $status
