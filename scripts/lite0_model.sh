#!/usr/bin/env bash
# The shipped model's recipe with EfficientNet-Lite0 in place of MobileNetV2: FER32 at 48 px from ImageNet
# (20 epochs, lr 0.01), continued for 18 epochs as efficientnet_lite0_x2 with random erasing, exported with
# the mirror average and scored with `emotrain evaluate`. Where the shipped model's MobileNetV2 run is there
# too (runs/fer_x2, from scripts/shipped_model.sh), both networks are also exported as one averaged model and
# scored. Finished stages are resumed, not redone. Figures: docs/results.md.
#   usage: scripts/lite0_model.sh [DATA_DIR] [RUNS_DIR]   (defaults: ../shared/data runs)
set -euo pipefail
data=${1:-../shared/data}
runs=${2:-runs}
fer=$data/fer2013/fer2013.csv.gz
wild=$data/wild

emotrain fer --fer "$fer" --target "$wild" --arch efficientnet_lite0 --epochs 20 --lr 0.01 --out "$runs/lite0" --resume
emotrain fer --fer "$fer" --target "$wild" --arch efficientnet_lite0_x2 --init "$runs/lite0/best.pt" \
  --epochs 18 --step 6 --lr 0.01 --erase 0.5 --out "$runs/lite0_x2" --resume
emotrain export "$runs/lite0_x2/best.pt" --out "$runs/lite0_x2/model.onnx" --fer "$fer" --mirror
emotrain evaluate "$runs/lite0_x2/model.onnx" --fer "$fer" --split PrivateTest --out "$runs/lite0_x2/eval-fer"
emotrain evaluate "$runs/lite0_x2/model.onnx" --folder "$wild/val" --out "$runs/lite0_x2/eval-wild"

if [ -f "$runs/fer_x2/best.pt" ]; then
  emotrain export "$runs/fer_x2/best.pt" "$runs/lite0_x2/best.pt" --out "$runs/ensemble/model.onnx" --fer "$fer"
  emotrain evaluate "$runs/ensemble/model.onnx" --fer "$fer" --split PrivateTest --out "$runs/ensemble/eval-fer"
  emotrain evaluate "$runs/ensemble/model.onnx" --folder "$wild/val" --out "$runs/ensemble/eval-wild"
fi
