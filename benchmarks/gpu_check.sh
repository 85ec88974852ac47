#!/usr/bin/env bash
# One short GPU check for a lent GPU machine (about 5 minutes on an H100):
#   1. train all six study architectures on the synthetic set on CUDA (bf16, channels-last),
#   2. the training throughput benchmark (ours vs naive vs ceiling, batch 32 and 256),
#   3. the predict / explanation latency benchmark on CPU and CUDA.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (results and logs land in OUT_DIR, default ./gpu_check)
set -euo pipefail
out="${1:-gpu_check}"
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" | tee "$out/device.txt"
python -m melasma synth --out "$out/synth" --n 300 --size 128 --seed 0 | tee "$out/synth.log"
python -m melasma train --data "$out/synth" --arch alexnet,googlenet,resnet18,vgg16,densenet121,mobilenetv2_100 \
    --epochs 8 --patience 8 --image-size 112 --pretrained off --device cuda --out "$out/run" 2>&1 | tee "$out/train.log"
python benchmarks/train_throughput.py --n 128 --device cuda 2>&1 | tee "$out/train_throughput.txt"
python benchmarks/predict_latency.py --devices cpu,cuda --repeats 10 2>&1 | tee "$out/predict_latency.txt"
