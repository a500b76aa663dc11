"""How thread count and thread settings change a full render's latency on this machine, for the
two CPU backends: ONNX Runtime (four chained sessions; intra-op spinning on or off) and OpenVINO
at its default precision (one call per render; threads pinned to cores or not).

    python -m benchmarks.threads --json benchmarks/results/threads.json

Thread counts: 1, 2, 4, 8, ... up to the machine's cores. With spinning on (ONNX Runtime's
default), idle worker threads of one session spin while the next session runs and fight it for
the cores. Each setting renders batch 1 (--runs timed renders) and batch 32 (a tenth as many)
with the bundled model after a warm-up: median, p90, p99, and renders/s at batch 32.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

from eqsdk.backends import default_precision, unavailable_reason
from eqsdk.backends.ort_cpu import OrtCpuBackend
from eqsdk.bench import time_calls
from eqsdk.bundle import bundle_dir, read_manifest
from eqsdk.renderer import Renderer


def thread_counts(cores: int) -> list[int]:
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts + ([cores] if counts[-1] != cores else [])


def time_renders(renderer: Renderer, batch: int, runs: int, warmup: int = 10) -> dict:
    s = renderer.image_size
    x = np.random.default_rng(0).random((4, batch, 3, s, s), dtype=np.float32)
    stats = time_calls(lambda: renderer.render_arrays(*x), runs, warmup)
    return {**stats, "renders_per_s": batch / stats["median_ms"] * 1e3}


def backends(directory: Path, manifest, threads: int):
    """(setting, backend) pairs to time at one thread count."""
    for spinning in (True, False):
        yield {"backend": "cpu", "precision": "fp32", "spinning": spinning}, \
            OrtCpuBackend(directory, manifest, threads, spinning)
    if unavailable_reason("openvino") is None:
        from eqsdk.backends.openvino import OpenVinoBackend

        precision = default_precision("openvino")
        for pinning in (False, True):
            yield {"backend": "openvino", "precision": precision, "pinning": pinning}, \
                OpenVinoBackend(directory, manifest, threads, precision, pinning)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist")
    p.add_argument("--runs", type=int, default=300, help="timed renders at batch 1 (a tenth at batch 32)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    directory = bundle_dir(args.model)
    manifest = read_manifest(directory)
    cores = os.cpu_count() or 1
    results = []
    for threads in thread_counts(cores):
        for setting, backend in backends(directory, manifest, threads):
            renderer = Renderer(backend, manifest)
            one = time_renders(renderer, 1, args.runs)
            many = time_renders(renderer, 32, max(10, args.runs // 10))
            results.append({"threads": threads, **setting, "batch1": one, "batch32": many})
            print(f"threads={threads} {' '.join(f'{k}={v}' for k, v in setting.items()):42} batch 1 median "
                  f"{one['median_ms']:.2f} ms p99 {one['p99_ms']:.2f} ms; batch 32 "
                  f"{many['renders_per_s']:.0f} renders/s", flush=True)
    report = {"benchmark": "full render at batch 1 and 32, by backend, thread count and thread settings",
              "model": manifest.name, "command": "python -m benchmarks.threads", "results": results,
              "environment": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                              "load_average_at_start": os.getloadavg(), "onnxruntime": ort.__version__,
                              "python": platform.python_version()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
