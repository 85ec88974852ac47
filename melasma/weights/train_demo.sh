#!/usr/bin/env bash
# Train the demo-model candidates on the semi-synthetic set, exactly as the model card says.
#
# Usage: bash melasma/weights/train_demo.sh RUN_DIR [PACK_DIR]
#   RUN_DIR   where the checkpoints go: RUN_DIR/{googlenet,mobilenetv2_100} at Adam lr 1e-3 (the
#             study's) and RUN_DIR/lr3e-4/{googlenet,mobilenetv2_100} at 3e-4 (from random init
#             MobileNetV2 diverged at 1e-3 on CPU before); the candidate is chosen by validation loss
#   PACK_DIR  optional: RUN_DIR as a gzipped tar split into 15 MB parts there (run.tgz.part-aa, ...),
#             for a transfer that limits file sizes; unpack with `cat run.tgz.part-* | tar xzf -`
# Data: .devdata/semisynth (2400 images, 256 px, JPEG 90; made here with the synth command below,
# which needs mediapipe and ../shared/data; it is made only when absent). DATA=... overrides it.
# Device: DEVICE=cuda by default (bf16 autocast, channels-last); DEVICE=cpu for a CPU run.
set -euo pipefail
run="${1:?usage: bash melasma/weights/train_demo.sh RUN_DIR [PACK_DIR]}"
pack="${2:-}"
data="${DATA:-.devdata/semisynth}"
device="${DEVICE:-cuda}"
size="${IMAGE_SIZE:-224}"
epochs="${EPOCHS:-30}"
py="${PYTHON:-python3}"

if [ ! -f "$data/labels.csv" ]; then
  "$py" -m melasma synth --base-photos ../shared/data/roboflow-melasma/non-melasma --out "$data" \
      -n 2400 --size 256 --seed 0
fi
common=(--data "$data" --image-size "$size" --epochs "$epochs" --patience 6 --pretrained off
        --device "$device" --seed 0)
mkdir -p "$run"
status=0  # a failed run still leaves the others' checkpoints to pack
PYTHONUNBUFFERED=1 "$py" -m melasma train "${common[@]}" --arch googlenet,mobilenetv2_100 --lr 1e-3 \
    --out "$run" 2>&1 | tee "$run/train.log" || status=$?
PYTHONUNBUFFERED=1 "$py" -m melasma train "${common[@]}" --arch googlenet,mobilenetv2_100 --lr 3e-4 \
    --out "$run/lr3e-4" 2>&1 | tee "$run/train-lr3e-4.log" || status=$?
cp "$data/bases.json" "$data/holdout.txt" "$run/"

if [ -n "$pack" ]; then
  mkdir -p "$pack"
  tar czf - -C "$(dirname "$run")" "$(basename "$run")" | split -b 15M - "$pack/run.tgz.part-"
  ls -l "$pack"
fi
exit "$status"
