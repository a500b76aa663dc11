"""What runs on a GPU machine with PyTorch CUDA and the CPU build of ONNX Runtime (no
onnxruntime-gpu, no TensorRT), in one process, in a few minutes (benchmarks/gpu_check.sh):

  1. the machine: GPU, driver, CUDA, cores;
  2. PyTorch on CUDA, the model rebuilt from the bundle's graphs (benchmarks/torch_reference.py):
     a full render, eager fp32 (TF32 off), eager bf16 autocast, and each replayed as a CUDA graph,
     at batch 1 to 256; GPU time by CUDA events around each call, median and p99;
  3. its parity with eqsdk's ONNX Runtime CPU render (fp32 and bf16);
  4. eqsdk on the machine's CPU cores (ONNX Runtime CPU, the bundle's graphs): the full render at
     batch 1 and 32 with 1, 2, 4, 8 and all cores.

    python -m benchmarks.gpu_check --out DIR [--model mnist] [--device cuda] [--quick]

--device cpu rehearses steps 2-4 on a machine without a GPU (CUDA graphs skipped). Writes
DIR/results.json and DIR/results.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import eqsdk
from benchmarks.torch_reference import model_from_bundle
from eqsdk.bench import time_calls
from eqsdk.bundle import bundle_dir

BATCHES = (1, 8, 32, 128, 256)


def machine(device: torch.device) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "cpu_cores": os.cpu_count(),
           "onnxruntime": __import__("onnxruntime").__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count, cuda=torch.version.cuda)
        try:
            out["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm",
                                                "--format=csv,noheader"], capture_output=True, text=True,
                                               timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            out["nvidia_smi"] = f"not run: {e}"
    return out


def gpu_times(fn, runs: int, warmup: int) -> dict:
    """Median, p99 and min of fn's GPU time in ms (CUDA events), after warmup calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        ms.append(start.elapsed_time(end))
    ms = np.array(ms)
    return {"median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "min_ms": float(ms.min()), "runs": runs}


def as_cuda_graph(fn):
    """fn captured once as a CUDA graph (static inputs and output): replaying it skips the
    launch of each kernel from Python."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream, as torch.cuda.graphs asks
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def torch_rows(model, device: torch.device, batches, runs: int, warmup: int) -> dict:
    """Full-render latency per batch: eager fp32, eager bf16, and (on CUDA) both as CUDA graphs."""
    rows = {}
    s = model.cfg.image_size
    for batch in batches:
        x = [torch.rand(batch, 3, s, s, device=device) for _ in range(4)]
        variants = {"eager fp32": lambda: model(*x),
                    "eager bf16": lambda: _bf16(model, x, device)}
        row = {}
        for name, fn in variants.items():
            with torch.inference_mode():
                if device.type == "cuda":
                    row[name] = gpu_times(fn, runs, warmup)
                    row[f"{name}, CUDA graph"] = gpu_times(as_cuda_graph(fn), runs, warmup)
                else:
                    row[name] = time_calls(fn, runs, warmup)
        for stats in row.values():
            stats["renders_per_s"] = batch / (stats["median_ms"] / 1e3)
        rows[str(batch)] = row
        print(json.dumps({"batch": batch, **{k: round(v["median_ms"], 4) for k, v in row.items()}}), flush=True)
    return rows


def _bf16(model, x, device):
    with torch.autocast(device.type, dtype=torch.bfloat16):
        return model(*x)


def parity(model, renderer, device: torch.device) -> dict:
    rng = np.random.default_rng(0)
    s = renderer.image_size
    x = rng.random((4, 8, 3, s, s), dtype=np.float32)
    ref = renderer.render_arrays(*x)
    with torch.inference_mode():
        t = [torch.from_numpy(a).to(device) for a in x]
        fp32 = model(*t).float().cpu().numpy()
        bf16 = _bf16(model, t, device).float().cpu().numpy()
    return {"fp32_max_abs_diff": float(np.abs(fp32 - ref).max()),
            "bf16_max_abs_diff": float(np.abs(bf16 - ref).max())}


def ort_cpu_rows(model_name: str, runs: int) -> dict:
    """eqsdk's full render on ONNX Runtime CPU with 1, 2, 4, ... and all cores."""
    cores = os.cpu_count() or 1
    counts = sorted({n for n in (1, 2, 4, 8, cores) if n <= cores})
    rows = {}
    rng = np.random.default_rng(0)
    for threads in counts:
        r = eqsdk.load(model_name, threads=threads)
        s = r.image_size
        row = {}
        for batch in (1, 32):
            x = rng.random((4, batch, 3, s, s), dtype=np.float32)
            stats = time_calls(lambda: r.render_arrays(*x), runs, 10, budget_s=10)
            stats["renders_per_s"] = batch / (stats["median_ms"] / 1e3)
            row[str(batch)] = stats
        rows[str(threads)] = row
        print(json.dumps({"ort_cpu_threads": threads, **{b: round(v["median_ms"], 3) for b, v in row.items()}}),
              flush=True)
    return rows


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"# GPU check: {m.get('gpu', 'no GPU (rehearsal on the CPU)')}", "",
             f"`{results['command']}`, {results['seconds']:.0f} s. torch {m['torch']}, CUDA {m.get('cuda')}, "
             f"{m['cpu_cores']} CPU cores, onnxruntime {m['onnxruntime']} (CPU build). Model `{results['model']}`.",
             "", f"## Full render, PyTorch on {m.get('gpu', 'the CPU')} (median ms"
             f"{' of GPU time, CUDA events' if 'gpu' in m else ''}; renders/s)", ""]
    batches = list(results["torch"])
    variants = list(results["torch"][batches[0]])
    lines += ["| batch | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for b in batches:
        lines.append(f"| {b} | " + " | ".join(
            f"{results['torch'][b][v]['median_ms']:.3f} (p99 {results['torch'][b][v]['p99_ms']:.3f}; "
            f"{results['torch'][b][v]['renders_per_s']:,.0f}/s)" for v in variants) + " |")
    p = results["parity"]
    lines += ["", f"Parity with eqsdk's ONNX Runtime CPU render (8 random inputs): fp32 max abs diff "
              f"{p['fp32_max_abs_diff']:.1e}, bf16 {p['bf16_max_abs_diff']:.1e}.", "",
              "## Full render, eqsdk on ONNX Runtime CPU (median ms; renders/s)", "",
              "| threads | batch 1 | batch 32 |", "|---|---|---|"]
    for threads, row in results["ort_cpu"].items():
        lines.append(f"| {threads} | " + " | ".join(f"{row[b]['median_ms']:.3f} ({row[b]['renders_per_s']:,.0f}/s)"
                                                    for b in ("1", "32")) + " |")
    lines += ["", "Not run: ONNX Runtime CUDA and TensorRT (neither is installed on the machine, and their "
              "wheels exceed what can be carried to it)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="mnist")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--quick", action="store_true", help="few runs and batches (a rehearsal)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but PyTorch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32
    t0 = time.time()
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    model, _ = model_from_bundle(bundle_dir(args.model))
    model = model.to(device).eval()
    renderer = eqsdk.load(args.model)
    runs, warmup = (20, 3) if args.quick else (200, 20)
    results = {"command": "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv),
               "model": args.model, "machine": machine(device)}
    results["parity"] = parity(model, renderer, device)
    results["torch"] = torch_rows(model, device, (1, 8) if args.quick else BATCHES, runs, warmup)
    results["ort_cpu"] = ort_cpu_rows(args.model, runs)
    results["seconds"] = time.time() - t0
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
