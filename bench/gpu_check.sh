#!/usr/bin/env bash
# GPU checks for issue 6 in one prepared run on a CUDA machine (H100/H200), with that machine's own
# CUDA torch (needs torch, numpy, pyarrow, safetensors, pyyaml, pytest; not Beam or Dagster):
#
#   bash bench/gpu_check.sh [OUT_DIR]        # default $OUT, else /tmp/gpu_check
#
# 1. the GPU-marked tests (bf16 + compile forward, bf16 compiled training);
# 2. bench/train_throughput.py at the 124m preset, bf16, compile, seq 1024, micro-batches 16 and 32
#    (tokens/s, MFU against the detected GPU's dense bf16 peak, peak memory, data-wait share);
# 3. the token reader alone (tokens/s on one core), to compare with what the GPU consumes.
# Each step has its own time limit, so one slow step cannot eat the whole lease; results are JSON lines.
set -uo pipefail
OUT_DIR="${1:-${OUT:-/tmp/gpu_check}}"
PY="${PY:-python3}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT_DIR/gpu.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT_DIR/gpu.txt"

timeout 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider \
  tests/test_training_model.py tests/test_training_trainer.py 2>&1 | tail -15 | tee "$OUT_DIR/gpu_tests.txt"

for bs in 16 32; do
  timeout 180 "$PY" bench/train_throughput.py --steps 40 --batch-size "$bs" \
    >>"$OUT_DIR/train.jsonl" 2>>"$OUT_DIR/train.log" || echo "batch $bs failed: see train.log" | tee -a "$OUT_DIR/train.jsonl"
done
timeout 60 "$PY" bench/train_throughput.py --reader >>"$OUT_DIR/train.jsonl" 2>>"$OUT_DIR/train.log"
cat "$OUT_DIR/train.jsonl"
