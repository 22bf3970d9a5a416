#!/usr/bin/env bash
# The GPU measurements of docs/benchmark.md in one run, ViT-B/16 at batch 256, bf16 autocast.
#
#   tools/benchmark_gpu.sh [OUT_DIR] [PART ...]
#
# PART (default: step rest):
#   tests     the GPU tests: the Triton short-sequence attention against SDPA, eager and compiled
#             (limit 3 min)
#   step      80%x5: eager and torch.compile beside K=1, the naive teacher per mask, supervised timm
#             ViT and the roofline; each ExtreMA step also with every attention through SDPA (no
#             Triton short-sequence kernel); attention alone per backend (cuDNN and the memory-
#             efficient kernel: flash and math were slower on the H200); device time by kernel
#             kind of the compiled step                                        (limit 4.5 min)
#   rest      90%x8 step, fp16 with GradScaler, UperNet seg-step beside mmseg's MAE, backbone
#             inference beside timm, data loader throughput                    (limit 3.5 min)
#   train     tools/train.py --amp --compile on the tiny config, 2 epochs of 512 random 32 px images:
#             the runner's path (bf16, compiled model forward, device colour views) works on CUDA
#             (limit 4 min)
# Each part writes OUT_DIR/<part>*.json and .log (8 files for all four parts; train's images and work
# dir go to a temporary folder), and stops at its own time limit, so a slow part never takes the
# others' time. (torch.compile's max-autotune is left out: on an H200 its autotuning
# did not finish in 470 s; time it with tools/benchmark.py --compile --compile-modes
# max-autotune-no-cudagraphs.)
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
    tests)
      echo "== tests (limit 180 s)"
      timeout 180 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_short_attention.py 2>&1 | tee "$OUT/tests.log" ;;
    step)
      bench step 270 --masks 0.8x5 --compile --sdpa-backends cudnn efficient --profile \
        --scenarios pretrain-step ;;
    rest)
      bench rest 150 --masks 0.9x8 --loader-batches 16 \
        --scenarios pretrain-step seg-step backbone-inference data
      bench rest_fp16 60 --masks 0.8x5 --amp float16 --no-baselines --scenarios pretrain-step ;;
    train)
      scratch=$(mktemp -d)
      data="$scratch/data"
      "$PYTHON" - "$data" <<'EOF_PY'
import os
import sys

import numpy as np
from PIL import Image

root, rng = sys.argv[1], np.random.default_rng(0)
for label in range(4):
    os.makedirs(f'{root}/train/class{label}', exist_ok=True)
    for i in range(128):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(f'{root}/train/class{label}/{i}.png')
EOF_PY
      echo "== train (limit 240 s)"
      timeout 240 "$PYTHON" tools/train.py \
        pretrain/configs/extrema_vit-tiny-p4_mask08x5_1xb128-cpu-8e_fashion-mnist-32px.py --amp --compile \
        --work-dir "$scratch/work_dir" --cfg-options train_dataloader.dataset.data_root="$data" \
        train_cfg.max_epochs=2 param_scheduler.0.end=1 param_scheduler.1.begin=1 param_scheduler.1.end=2 \
        param_scheduler.1.T_max=1 default_hooks.logger.interval=1 2>&1 | tee "$OUT/train.log"
      rm -rf "$scratch" ;;
    *)
      echo "unknown part '$part': choose from tests step rest train" >&2
      exit 2 ;;
  esac
done
