#!/usr/bin/env bash
# One bounded check for a lent GPU machine (362 s on an H200, 2026-11-27), each step under its own limit:
#   1. train the demo-model candidates on the semi-synthetic set (melasma/weights/train_demo.sh),
#   2. predict / LRP / Grad-CAM / gradient x input latency per architecture on CUDA,
#   3. batched LRP throughput (explain-report's path) on CUDA,
#   4. AlexNet and VGG16 from random init: the study's lr 1e-3 vs --lr-auto (collapse check).
# Usage: [DEMO_DATA=DIR] bash benchmarks/gpu_check.sh OUT_DIR   (DEMO_DATA: the semi-synthetic set)
#   OUT_DIR/gpu_check.log holds every step's output; OUT_DIR/run.tgz.part-* the trained checkpoints.
# A step that fails or runs out of time is logged and the next one still runs.
set -uo pipefail
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}"
mkdir -p "$out"
log="$out/gpu_check.log"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

step() {  # step NAME SECONDS COMMAND...
  local name="$1" limit="$2" start
  shift 2
  start=$(date +%s)
  echo "=== $name (limit ${limit} s)" >>"$log"
  timeout "$limit" "$@" >>"$log" 2>&1
  echo "=== $name: exit $?, $(( $(date +%s) - start )) s" | tee -a "$log"
}

step device 30 "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.cuda.get_device_name(0), 'torch', torch.__version__)"
step demo-train 300 env PYTHON="$py" DEVICE=cuda DATA="${DEMO_DATA:-.devdata/semisynth}" bash melasma/weights/train_demo.sh /tmp/demo_run
# Pack whatever was trained, also when the step ran out of time (the transfer takes files <= 16 MB).
step pack-checkpoints 60 bash -c "tar czf - -C /tmp demo_run | split -b 15M - '$out/run.tgz.part-'"
step predict-latency 55 "$py" benchmarks/predict_latency.py --device cuda --repeats 20
step explain-throughput 40 "$py" benchmarks/explain_throughput.py --device cuda
step collapse-check 75 "$py" benchmarks/collapse_check.py --device cuda
