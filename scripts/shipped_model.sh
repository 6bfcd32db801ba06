#!/usr/bin/env bash
# The shipped model, engines/emocam.onnx: the paper's cascade with honest selection, then export and scoring.
#   1. ImageNet -> FER-2013 Training at 48 px, the epoch chosen on PublicTest (FER28); continued at 96 px
#      (mobilenet_v2_x2, the same weights on the face upsampled 2x) for 8, 12 and 6 more epochs, each run's epoch
#      chosen on PublicTest again;
#   2. the 48 px network and the longer 96 px one each through stage 2: the target sets wild/ and ckplus48/ through
#      the live detector, landmarks, gate and crop, with footage-like augmentation and 3,000 FER-2013 faces rehearsed
#      each epoch (for the 96 px network, half of each rehearsed face's target is its stage-1 network's own answer);
#      the epoch chosen on the persons carved out of the targets' train folders and as many carved FER-2013 faces;
#   3. the two stage-2 networks exported as one model (probabilities averaged) with the mirror average, the choice
#      made on validation faces (scripts/validate_stage2.py, docs/results.md); scored on FER-2013 PrivateTest,
#      wild/val and ckplus48/val, none of which chose anything.
# Stages that already finished are resumed, not redone.
#   usage: scripts/shipped_model.sh [DATA_DIR] [RUNS_DIR] [ENGINES_DIR]   (defaults: ../shared/data runs engines)
set -euo pipefail
data=${1:-../shared/data}
runs=${2:-runs}
engines=${3:-engines}
fer=$data/fer2013/fer2013.csv.gz
stage2=(--target "$data/wild" --target "$data/ckplus48" --fer "$fer" --epochs 15 --step 10 --lr 0.001 --footage 0.5
        --rehearse 3000 --resume)

emotrain fer --fer "$fer" --variant fer28 --epochs 16 --step 8 --lr 0.01 --out "$runs/s1_48" --resume
emotrain fer --fer "$fer" --variant fer28 --arch mobilenet_v2_x2 --init "$runs/s1_48/best.pt" --epochs 8 --step 3 \
  --lr 0.01 --erase 0.5 --out "$runs/s1_x2" --resume
emotrain fer --fer "$fer" --variant fer28 --arch mobilenet_v2_x2 --init "$runs/s1_x2/best.pt" --epochs 12 --step 6 \
  --lr 0.01 --erase 0.5 --out "$runs/s1_x2b" --resume
emotrain fer --fer "$fer" --variant fer28 --arch mobilenet_v2_x2 --init "$runs/s1_x2b/best.pt" --epochs 6 --step 3 \
  --lr 0.001 --erase 0.5 --out "$runs/s1_x2c" --resume
emotrain single --init "$runs/s1_48/best.pt" "${stage2[@]}" --out "$runs/s2_48"
emotrain single --init "$runs/s1_x2c/best.pt" "${stage2[@]}" --distill 0.5 --out "$runs/s2d_x2"
emotrain export "$runs/s2d_x2/best.pt" "$runs/s2_48/best.pt" --out "$engines/emocam.onnx" --fer "$fer" --mirror
emotrain evaluate "$engines/emocam.onnx" --fer "$fer" --split PrivateTest --out docs/results/shipped-fer
emotrain evaluate "$engines/emocam.onnx" --folder "$data/wild/val" --out docs/results/shipped-wild
emotrain evaluate "$engines/emocam.onnx" --folder "$data/ckplus48/val" --out docs/results/shipped-ckplus
