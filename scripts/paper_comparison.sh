#!/usr/bin/env bash
# The paper's comparison of training schemes on FER-2013 and the wild target set, with one backbone:
# (a) ImageNet -> target, (b) ImageNet -> FER32, (c) the cascade, (d) FER32 + target combined.
# Each model is exported and scored with `emotrain evaluate` on FER-2013 PrivateTest and wild/val;
# the table for docs/results.md is printed at the end. Stages that already finished are resumed, not redone.
#   usage: scripts/paper_comparison.sh [DATA_DIR] [RUNS_DIR]      (defaults: ../shared/data runs)
set -euo pipefail
data=${1:-../shared/data}
runs=${2:-runs}
fer=$data/fer2013/fer2013.csv.gz
wild=$data/wild
common=(--resume --no-export)

emotrain cascade --fer "$fer" --target "$wild" --out "$runs/cascade" --lr1 0.01 --epochs1 20 --lr2 0.001 --epochs2 20 "${common[@]}"
emotrain single --target "$wild" --fer "$fer" --out "$runs/single" --lr 0.01 --epochs 20 "${common[@]}"
emotrain combined --fer "$fer" --target "$wild" --out "$runs/combined" --lr 0.01 --epochs 20 "${common[@]}"

declare -A scheme=([single]="$runs/single" [fer]="$runs/cascade/stage1" [cascade]="$runs/cascade/stage2" [combined]="$runs/combined")
for name in single fer cascade combined; do
  dir=${scheme[$name]}
  emotrain export "$dir/best.pt" --out "$dir/model.onnx" --fer "$fer"
  emotrain evaluate "$dir/model.onnx" --fer "$fer" --split PrivateTest --out "$runs/comparison/$name-fer" > /dev/null
  emotrain evaluate "$dir/model.onnx" --folder "$wild/val" --out "$runs/comparison/$name-wild" > /dev/null
done
emotrain table "$runs"/comparison/{single,fer,cascade,combined}-{fer,wild}.json
