#!/usr/bin/env bash
# The shipped model, engines/emocam.onnx: FER32 stage 1 of the paper comparison (MobileNetV2, 48 px, 20 epochs),
# continued for 24 epochs as mobilenet_v2_x2 (the same network on its input upsampled 2x) with random erasing,
# then exported and scored with `emotrain evaluate`. Stages that already finished are resumed, not redone.
#   usage: scripts/shipped_model.sh [DATA_DIR] [RUNS_DIR] [ENGINES_DIR]   (defaults: ../shared/data runs engines)
set -euo pipefail
data=${1:-../shared/data}
runs=${2:-runs}
engines=${3:-engines}
fer=$data/fer2013/fer2013.csv.gz
wild=$data/wild

emotrain cascade --fer "$fer" --target "$wild" --out "$runs/cascade" --lr1 0.01 --epochs1 20 --lr2 0.001 --epochs2 20 \
  --resume --no-export
emotrain fer --fer "$fer" --target "$wild" --arch mobilenet_v2_x2 --init "$runs/cascade/stage1/best.pt" \
  --epochs 24 --step 8 --lr 0.01 --erase 0.5 --out "$runs/fer_x2" --resume
emotrain export "$runs/fer_x2/best.pt" --out "$engines/emocam.onnx" --fer "$fer" --mirror
emotrain evaluate "$engines/emocam.onnx" --fer "$fer" --split PrivateTest --out docs/results/shipped-fer
emotrain evaluate "$engines/emocam.onnx" --folder "$wild/val" --out docs/results/shipped-wild
