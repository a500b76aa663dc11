"""The latency suite: ONNX Runtime CPU (fp32 and int8) against PyTorch on the same model, with
FLOPs, achieved GFLOP/s and the machine's measured peak, in one process.

    python -m benchmarks.suite --out benchmarks/results/cpu

Measures, in this order (all ONNX Runtime timings before any PyTorch one, so that PyTorch's
OpenMP threads are not spinning while ONNX Runtime is timed):
  1. eqsdk.bench.bench on the bundle: per-graph latency, the full / new-motion / new-background
     paths at each --batch, session creation, first call, SDK overhead at batch 1; ONNX Runtime
     CPU fp32 with eqsdk's default threads (2 here, spinning off).
  2. The int8 bundle (benchmarks/quantize.py) written to a temporary directory: the same
     measurements, the kernels ONNX Runtime runs, whether it has a bf16 path here, and the
     quality cost on the Moving MNIST test split.
  3. PyTorch on the same model rebuilt from the bundle's graphs (benchmarks/torch_reference.py),
     checked against the eqsdk render, eager and torch.compile, with the same thread count.
  4. The motion check (eqsdk.motion_check; on in the mnist bundle): a full render with it, ONNX
     Runtime and PyTorch eager. Steps 1-3 time the graphs without it, like for like.
  5. FLOPs per graph and path, and the matrix-product peaks (benchmarks/flops.py).
Writes OUT/results.json (everything, with the environment and the command), OUT/results.md and
OUT/latency.png (benchmarks/report.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

import eqsdk
from benchmarks import flops, quantize, report, torch_reference
from eqsdk.backends.ort_cpu import default_threads
from eqsdk.bench import bench
from eqsdk.bundle import bundle_dir
from eqsdk.verify import TOLERANCE

PARITY_TOLERANCE = TOLERANCE["fp32"]  # max abs difference, PyTorch vs eqsdk render


def environment(threads: int) -> dict:
    return {"cpu": flops.cpu_info(), "python": platform.python_version(), "numpy": np.__version__,
            "onnxruntime": ort.__version__, "onnx": onnx.__version__, "torch": torch.__version__,
            "threads": {"onnxruntime": f"intra_op {threads}, inter_op 1, spinning off (eqsdk default)",
                        "torch": f"torch.set_num_threads({threads})",
                        "numpy": "its BLAS's default (all cores)"},
            "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                "OPENBLAS_NUM_THREADS") if k in os.environ},
            "load_average_at_start": os.getloadavg()}


def measure_int8(directory: Path, renderer, args, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        int8_dir = Path(tmp) / "int8"
        t0 = time.perf_counter()
        manifest = quantize.quantize_bundle(directory, int8_dir, renderer, args.calibration)
        out = {"quantize_s": time.perf_counter() - t0, "precision": manifest["precision"],
               "kernels": quantize.optimized_ops(int8_dir, threads)}
        out["ort"] = bench(int8_dir, batches=args.batch, runs=args.runs, warmup=args.warmup,
                           budget_s=args.budget, check_motion=False)  # like for like, as fp32
        # Say which graphs run in int8 and what stays fp32.
        out["ort"]["environment"]["precision"] = (f"int8 ({', '.join(manifest['precision']['int8'])}; QDQ) "
                                                  f"and fp32 ({', '.join(manifest['precision']['fp32'])})")
        out["quality"] = quantize.quality(renderer, eqsdk.load(int8_dir, check_motion=False), args.examples)
    out["bf16_onnxruntime"] = quantize.bf16_support(threads)
    return out


def run(args) -> dict:
    threads = default_threads()
    directory = bundle_dir(args.model)
    results = {"command": "python -m benchmarks.suite " + shlex.join(args.argv),
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "environment": environment(threads),
               "settings": {"runs": args.runs, "warmup": args.warmup, "budget_s": args.budget,
                            "batches": args.batch}}
    step = lambda name: print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)  # noqa: E731

    step("ONNX Runtime fp32")
    results["ort"] = bench(args.model, batches=args.batch, runs=args.runs, warmup=args.warmup,
                           budget_s=args.budget, check_motion=False)
    renderer = eqsdk.load(args.model, check_motion=False)
    if not args.skip_int8:
        step("int8: quantize, time, quality")
        results["int8"] = measure_int8(directory, renderer, args, threads)

    step("PyTorch reference: rebuild and parity")
    model, found = torch_reference.model_from_bundle(directory)
    torch.set_num_threads(threads)
    diff = torch_reference.parity(model, renderer)
    results["parity"] = {"max_abs_diff_render": diff, "tolerance": PARITY_TOLERANCE,
                         "passed": diff <= PARITY_TOLERANCE, "weights": found}
    step("PyTorch eager")
    results["torch_eager"] = torch_reference.bench(model, args.batch, args.runs, args.warmup, threads,
                                                   budget_s=args.budget)
    if not args.skip_compile:
        step("torch.compile")
        try:
            results["torch_compile"] = torch_reference.bench(model, args.batch, args.runs, args.warmup,
                                                             threads, compile=True, budget_s=args.budget)
        except Exception as e:  # inductor needs a C++ toolchain and may reject an op; record why
            results["torch_compile"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:500]}"}

    step("The motion check: full renders with it")
    results["motion_check"] = motion_check(args, model, threads)

    step("FLOPs and matmul peaks")
    per_graph = flops.graph_flops(model)
    results["flops"] = {"method": "torch.utils.flop_counter.FlopCounterMode on the PyTorch modules; "
                                  "convolutions and matrix products, 1 multiply-add = 2 FLOP",
                        "per_graph_batch1": per_graph, "per_render": flops.path_flops(per_graph)}
    results["peak"] = flops.peaks(threads, runs=args.peak_runs)
    results["environment"]["load_average_at_end"] = os.getloadavg()
    results["comparison"] = report.comparison(results)
    results["targets"] = report.targets(results)
    return results


def motion_check(args, model, threads: int) -> dict:
    """Full renders with the motion check, ONNX Runtime then PyTorch eager, at each batch size
    (random frames: the check's cost does not depend on what it finds)."""
    from eqsdk.bench import time_calls

    renderer = eqsdk.load(args.model, check_motion=True)
    s = renderer.image_size
    out = {}
    for batch in args.batch:
        x = np.random.default_rng(batch).random((4, batch, 3, s, s), dtype=np.float32)
        out[str(batch)] = {"ort": time_calls(lambda: renderer.render_arrays(*x), args.runs, args.warmup, args.budget)}
    torch.set_num_threads(threads)
    with torch.inference_mode():
        for batch in args.batch:
            x = torch.from_numpy(np.random.default_rng(batch).random((4, batch, 3, s, s), dtype=np.float32))
            out[str(batch)]["torch_eager"] = time_calls(lambda: model(*x, checked=True), args.runs, args.warmup,
                                                        args.budget)
    return out


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist", help="bundled model name or bundle directory")
    p.add_argument("--out", type=Path, required=True, help="directory for results.json/.md, latency.png")
    p.add_argument("--runs", type=int, default=200, help="timed runs per measurement")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs before each measurement")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds per measurement: slower rows (large batches) get fewer runs, at "
                        "least 20; the count is in the report (0: always --runs)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32], help="batch sizes")
    p.add_argument("--skip-compile", action="store_true", help="no torch.compile measurement")
    p.add_argument("--skip-int8", action="store_true", help="no int8 quantization and measurement")
    p.add_argument("--calibration", type=int, default=256, help="int8 calibration frames")
    p.add_argument("--examples", type=int, default=500, help="test examples for the int8 quality cost")
    p.add_argument("--peak-runs", type=int, default=10, help="timed 2048^3 products per peak figure")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(report.markdown(results))
    report.plot(results, args.out / "latency.png")
    print(report.markdown(results))
    return results


if __name__ == "__main__":
    main()
