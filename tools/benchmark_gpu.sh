#!/usr/bin/env bash
# The GPU measurements of docs/benchmark.md in one run, ViT-B/16 at batch 256, bf16 autocast.
#
#   tools/benchmark_gpu.sh [OUT_DIR] [PART ...]
#
# PART (default: step rest):
#   step      80%x5: eager and torch.compile beside K=1, the naive teacher per mask, supervised timm
#             ViT and the roofline; the eager step and attention alone per SDPA backend; device time
#             by kernel kind of the compiled step                              (limit 4.5 min)
#   rest      90%x8 step, fp16 with GradScaler, UperNet seg-step beside mmseg's MAE, backbone
#             inference beside timm, data loader throughput                    (limit 3.5 min)
#   autotune  torch.compile(mode='max-autotune-no-cudagraphs'); its autotuning took > 280 s on an H200
#             (limit 5.5 min)
# Each part writes OUT_DIR/<part>*.json and .log, and stops at its own time limit, so a slow part
# never takes the others' time.
set -u
OUT=$(realpath -m "${1:-work_dirs/benchmark_gpu}")
shift || true
PARTS=${*:-step rest}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."

bench() {  # name, time limit (s), benchmark arguments
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s)"
  timeout "$limit" "$PYTHON" tools/benchmark.py --device cuda --archs base --batch-size 256 "$@" \
    --out "$OUT/$name.json" 2>&1 | tee "$OUT/$name.log"
}

for part in $PARTS; do
  case $part in
    step)
      bench step 270 --masks 0.8x5 --compile --sdpa-backends flash efficient cudnn math --profile \
        --scenarios pretrain-step ;;
    rest)
      bench rest 150 --masks 0.9x8 --loader-batches 16 \
        --scenarios pretrain-step seg-step backbone-inference data
      bench rest_fp16 60 --masks 0.8x5 --amp float16 --no-baselines --scenarios pretrain-step ;;
    autotune)
      bench autotune 330 --masks 0.8x5 --no-baselines --compile \
        --compile-modes max-autotune-no-cudagraphs --scenarios pretrain-step ;;
    *)
      echo "unknown part '$part': choose from step rest autotune" >&2
      exit 2 ;;
  esac
done
