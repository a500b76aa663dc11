"""How ONNX Runtime's thread settings change a full render's latency on this machine.

    python benchmarks/threads.py --json benchmarks/results/threads.json

Four chained small graphs: with thread spinning on (ONNX Runtime's default), idle worker threads
of one session spin while the next session runs and fight it for the cores. Each setting renders
batch 1 with the bundled model; median, p90, p99 over --runs timed renders after a warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

from eqsdk.backends.ort_cpu import OrtCpuBackend
from eqsdk.bench import time_calls
from eqsdk.bundle import bundle_dir, read_manifest
from eqsdk.renderer import Renderer


def time_renders(renderer: Renderer, runs: int, warmup: int = 20) -> dict:
    rng = np.random.default_rng(0)
    x = [rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(4)]
    return time_calls(lambda: renderer.render_arrays(*x), runs, warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist")
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    directory = bundle_dir(args.model)
    manifest = read_manifest(directory)
    results = []
    for threads in (1, 2):
        for spinning in (True, False):
            backend = OrtCpuBackend(directory, manifest, threads, spinning)
            stats = time_renders(Renderer(backend, manifest), args.runs)
            results.append({"intra_op_threads": threads, "spinning": spinning, **stats})
            print(f"threads={threads} spinning={spinning!s:5}  median {stats['median_ms']:.2f} ms  "
                  f"p99 {stats['p99_ms']:.2f} ms")
    report = {"benchmark": "full render, batch 1, four chained ONNX Runtime CPU sessions",
              "model": manifest.name, "results": results,
              "environment": {"cpu": platform.processor() or platform.machine(),
                              "cores": os.cpu_count(), "onnxruntime": ort.__version__,
                              "python": platform.python_version()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
