#!/usr/bin/env bash
# Train the demo-model candidates on the semi-synthetic set, exactly as the model card says.
#
# Usage: bash weights/train_demo.sh RUN_DIR [PACK_DIR]
#   RUN_DIR   where the checkpoints go: RUN_DIR/googlenet, RUN_DIR/mobilenetv2_100 (lr 1e-3) and
#             RUN_DIR/lr3e-4/mobilenetv2_100 (MobileNetV2 diverged from scratch at 1e-3 before)
#   PACK_DIR  optional: RUN_DIR as a gzipped tar split into 15 MB parts there (run.tgz.part-aa, ...),
#             for a transfer that limits file sizes; unpack with `cat run.tgz.part-* | tar xzf -`
# Data: .devdata/semisynth (2400 images, 256 px, JPEG 90; made here with the synth command below,
# which needs mediapipe and ../shared/data; it is made only when absent). DATA=... overrides it.
# Device: DEVICE=cuda by default (bf16 autocast, channels-last); DEVICE=cpu for a CPU run.
set -euo pipefail
run="${1:?usage: bash weights/train_demo.sh RUN_DIR [PACK_DIR]}"
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
"$py" -m melasma train "${common[@]}" --arch googlenet,mobilenetv2_100 --lr 1e-3 --out "$run"
"$py" -m melasma train "${common[@]}" --arch mobilenetv2_100 --lr 3e-4 --out "$run/lr3e-4"
cp "$data/bases.json" "$data/holdout.txt" "$run/"

if [ -n "$pack" ]; then
  mkdir -p "$pack"
  tar czf - -C "$(dirname "$run")" "$(basename "$run")" | split -b 15M - "$pack/run.tgz.part-"
  ls -l "$pack"
fi
