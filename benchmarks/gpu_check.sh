#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a machine with PyTorch CUDA: runs from the repository
# root without installing anything (the machine's own torch, onnx, onnxruntime, click, Pillow),
# in under 8 minutes (390 + 80 s at most); everything goes to $OUT (or benchmarks/results/gpu), log included.
#   bash benchmarks/gpu_check.sh            # on the GPU
#   bash benchmarks/gpu_check.sh --device cpu --quick    # a rehearsal on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi: not available" > "$out/nvidia-smi.txt"
timeout 390 python3 -m benchmarks.gpu_check --out "$out" "$@" 2>&1 | tee "$out/log.txt"
# The CPU backends on all of the machine's cores, by thread count and setting (OpenVINO where installed).
timeout 80 python3 -m benchmarks.threads --runs 100 --json "$out/threads.json" 2>&1 | tee -a "$out/log.txt" || true
