"""The latency suite: eqsdk's full render against every other way to run the same model on this
machine, with the measured peaks, FLOPs and the targets, in one process.

    python -m benchmarks.suite --out benchmarks/results/cpu      # on quiet cores, several minutes
    python -m benchmarks.suite --quick --out /tmp/suite          # a rehearsal, ~3 minutes

Measures, in this order:
  1. The machine's peaks per precision (benchmarks/flops.py): fp32 (torch.matmul, ONNX Runtime
     MatMul), bf16 (torch.matmul, OpenVINO MatMul), int8 (ONNX Runtime MatMulInteger), each
     kernel's median of trials taken in turns.
  2. eqsdk.bench.bench on the bundle: per-graph latency, the four paths, session creation, first
     call and the SDK's overhead at batch 1 (ONNX Runtime CPU fp32, eqsdk's default threads).
  3. Optionally the int8 bundle (benchmarks/quantize.py): the same, its kernels and quality cost.
  4. The rows: a full render at each --batch by every contestant (ROWS), in interleaved rounds
     (A B C ... A B C ...): each row's figure is the median of its round medians, its p99 over
     all its runs, and a row whose round medians spread by more than --spread-limit of their
     median is marked unreliable and not scored. The PyTorch model is rebuilt from the bundle's
     graphs (benchmarks/torch_reference.py) and the merged ONNX model is composed from them
     (benchmarks/merged_graph.py); both are checked against the eqsdk render first.
  5. Optionally the motion check: full renders with it, ONNX Runtime and PyTorch (batched alike).
  6. FLOPs per render; a row above its precision's peak raises the peak (flops.raise_peaks).
Writes OUT/results.json (everything, with the environment, the load average before and after and
the command), OUT/results.md and OUT/latency.png (benchmarks/report.py).
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
from benchmarks import flops, merged_graph, quantize, report, torch_reference
from eqsdk.backends import unavailable_reason
from eqsdk.backends.ort_cpu import default_threads
from eqsdk.bench import bench, time_calls
from eqsdk.bundle import bundle_dir
from eqsdk.verify import TOLERANCE
from train.model import MotionReader, ReaderConfig

PARITY_TOLERANCE = TOLERANCE["fp32"]  # max abs difference of a render against eqsdk's
PAUSE_S = 0.05  # between two rows of a round: spinning threads of the previous row go idle

# The contestants, each a full render (the drive rows: a new driving frame on a cached character,
# background and reference frame, its motion read by f_c and T^Z or by the bundle's motion
# reader): label -> (precision class for the peaks, render path).
ROWS = {
    "eqsdk cpu fp32 (ONNX Runtime, 4 sessions)": ("fp32", "full"),
    "eqsdk cpu fp32, drive": ("fp32", "drive"),
    "eqsdk openvino fp32 (one call)": ("fp32", "full"),
    "eqsdk openvino bf16 (one call)": ("bf16", "full"),
    "eqsdk openvino bf16, drive": ("bf16", "drive"),
    "eqsdk openvino bf16, drive with the reader": ("bf16", "drive_reader"),
    "one merged ONNX model, ORT spinning off": ("fp32", "full"),
    "one merged ONNX model, ORT spinning on": ("fp32", "full"),
    "PyTorch eager fp32": ("fp32", "full"),
    "torch.compile fp32": ("fp32", "full"),
    "torch.compile + bf16 autocast": ("bf16", "full"),
}


def environment(threads: int) -> dict:
    versions = {"cpu": flops.cpu_info(), "python": platform.python_version(), "numpy": np.__version__,
                "onnxruntime": ort.__version__, "onnx": onnx.__version__, "torch": torch.__version__}
    try:
        import openvino

        versions["openvino"] = openvino.__version__
    except ImportError:
        versions["openvino"] = None
    return {**versions,
            "threads": {"onnxruntime": f"intra_op {threads}, inter_op 1 (eqsdk's session options)",
                        "openvino": f"INFERENCE_NUM_THREADS {threads}; one stream for a single image, a batch split "
                                    "over the throughput hint's streams (eqsdk's backend)",
                        "torch": f"torch.set_num_threads({threads})"},
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


def contestants(args, batch: int, model, merged, threads: int, compiled: dict) -> tuple[dict, dict]:
    """({label: call} for one batch, {label: why not measured}). Each call renders `batch` items
    from fixed random inputs; compiled collects the torch.compile records."""
    from eqsdk.renderer import Encoding

    s = model.cfg.image_size
    x = np.random.default_rng(batch).random((4, batch, 3, s, s), dtype=np.float32)
    xt = tuple(torch.from_numpy(a) for a in x)
    calls, skipped = {}, {}
    def drive(renderer):
        """The drive path: a new frame x[2] on a cached character, background and reference frame
        (with the reader, the reference frame's image)."""
        b = renderer.backend
        character = Encoding("character", b.run("f_c", x=b.upload(x[0]))["z"], batch, False)
        background = Encoding("background", b.run("f_b", x=b.upload(x[3]))["z"], batch, False)
        reference = x[1][:1] if renderer.reader else \
            Encoding("character", b.run("f_c", x=b.upload(x[1][:1]))["z"], 1, True)
        return lambda: renderer.drive(character, background, reference, x[2])

    renderer = eqsdk.load(args.model, check_motion=False, threads=threads)
    calls["eqsdk cpu fp32 (ONNX Runtime, 4 sessions)"] = lambda: renderer.render_arrays(*x)
    calls["eqsdk cpu fp32, drive"] = drive(renderer)
    for precision in ("fp32", "bf16"):
        label = f"eqsdk openvino {precision} (one call)"
        try:
            r = eqsdk.load(args.model, backend="openvino", precision=precision, check_motion=False,
                           threads=threads)
            calls[label] = lambda r=r: r.render_arrays(*x)
            if precision == "bf16":
                calls["eqsdk openvino bf16, drive"] = drive(r)
                if "reader" in r.manifest.graphs:
                    calls["eqsdk openvino bf16, drive with the reader"] = drive(
                        eqsdk.Renderer(r.backend, r.manifest, reader=True))
                else:
                    skipped["eqsdk openvino bf16, drive with the reader"] = "the bundle has no motion reader"
        except eqsdk.errors.EqsdkError as e:  # not installed, or no bf16 on this CPU
            skipped[label] = str(e).splitlines()[0]
            if precision == "bf16":
                for drive_row in ("eqsdk openvino bf16, drive", "eqsdk openvino bf16, drive with the reader"):
                    skipped[drive_row] = skipped[label]
    feeds = dict(zip(merged_graph.INPUTS, x))
    for spinning in (False, True):
        session = merged_graph.ort_session(merged, threads, spinning)
        calls[f"one merged ONNX model, ORT spinning {'on' if spinning else 'off'}"] = \
            lambda session=session: session.run(None, feeds)
    eager = torch_reference.FullRender(model).eval()
    calls["PyTorch eager fp32"] = lambda: eager(*xt)
    for bf16, label in ((False, "torch.compile fp32"), (True, "torch.compile + bf16 autocast")):
        if args.skip_compile or (args.quick and not bf16):
            skipped[label] = "--skip-compile" if args.skip_compile else "--quick (the target needs the bf16 row)"
            continue
        mode = args.compile_mode if not bf16 else "default"
        try:
            fn, record = torch_reference.compiled_full_render(model, xt, bf16=bf16, mode=mode)
        except Exception as e:  # inductor needs a C++ toolchain and may reject an op; record why
            skipped[label] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            continue
        compiled[f"{batch}/{label}"] = record
        calls[label] = lambda fn=fn: fn(*xt)
    return calls, skipped


def interleaved(calls: dict, rounds: int, round_s: float, max_runs: int, warmup: int) -> dict[str, list]:
    """{label: [round times (s) ...]}: the calls in turns, A B C ... A B C ..., `rounds` times;
    in each turn a call runs as often as fits in round_s (3 to max_runs times, from its warm-up
    time), after a pause and one untimed call."""
    runs = {}
    for label, fn in calls.items():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        runs[label] = int(min(max_runs, max(3, round_s / max(time.perf_counter() - t0, 1e-6))))
    times = {label: [] for label in calls}
    for _ in range(rounds):
        for label, fn in calls.items():
            time.sleep(PAUSE_S)
            fn()
            t = np.empty(runs[label])
            for k in range(len(t)):
                t0 = time.perf_counter()
                fn()
                t[k] = time.perf_counter() - t0
            times[label].append(t)
    return times


def summarize(rounds: list, batch: int, spread_limit: float) -> dict:
    """One row's statistics from its rounds of times (s): median of the round medians, p99 over
    all runs, renders/s, and the spread of the round medians, (max - min) / median; a spread
    above spread_limit makes the row unreliable (reported, not scored)."""
    medians = np.array([np.median(r) for r in rounds]) * 1e3
    every = np.concatenate(rounds) * 1e3
    median = float(np.median(medians))
    spread = float((medians.max() - medians.min()) / median)
    return {"median_ms": median, "p99_ms": float(np.percentile(every, 99)),
            "renders_per_s": batch / (median / 1e3), "round_medians_ms": [round(float(m), 4) for m in medians],
            "runs": len(every), "spread": spread, "reliable": spread <= spread_limit}


def rows(args, model, merged, threads: int) -> tuple[dict, dict, dict]:
    """({batch: {label: stats}}, {batch: {label: why not}}, compile records)."""
    out, skipped, compiled = {}, {}, {}
    with torch.inference_mode():
        for batch in args.batch:
            calls, skipped[str(batch)] = contestants(args, batch, model, merged, threads, compiled)
            # a recompile while timing would run a compiled row partly eager: make it an error
            torch._dynamo.config.error_on_recompile = True
            try:
                times = interleaved(calls, args.rounds, args.round_s, args.runs, args.warmup)
            finally:
                torch._dynamo.config.error_on_recompile = False
            out[str(batch)] = {label: {"precision": ROWS[label][0], "path": ROWS[label][1],
                                       **summarize(t, batch, args.spread_limit)} for label, t in times.items()}
    return out, skipped, compiled


def run(args) -> dict:
    threads = default_threads()
    directory = bundle_dir(args.model)
    results = {"command": "python -m benchmarks.suite " + shlex.join(args.argv),
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "environment": environment(threads),
               "settings": {"runs": args.runs, "warmup": args.warmup, "budget_s": args.budget,
                            "batches": args.batch, "rounds": args.rounds, "round_s": args.round_s,
                            "spread_limit": args.spread_limit, "quick": args.quick,
                            "compile_mode": args.compile_mode}}
    step = lambda name: print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)  # noqa: E731

    step("matrix-product peaks")
    results["peak"] = flops.peaks(threads, n=args.peak_n, trials=args.peak_trials)
    step("eqsdk bench: graphs, paths, SDK overhead (ONNX Runtime fp32)")
    results["ort"] = bench(args.model, batches=args.batch, runs=args.runs, warmup=args.warmup,
                           budget_s=args.budget, check_motion=False)
    if unavailable_reason("openvino") is None:
        step("eqsdk bench: graphs, paths, SDK overhead (OpenVINO at its default precision)")
        results["openvino"] = bench(args.model, backend="openvino", batches=args.batch, runs=args.runs,
                                    warmup=args.warmup, budget_s=args.budget, check_motion=False)
    renderer = eqsdk.load(args.model, check_motion=False)
    if not args.skip_int8:
        step("int8: quantize, time, quality")
        results["int8"] = measure_int8(directory, renderer, args, threads)

    step("PyTorch reference and the merged ONNX model: build and parity")
    model, found = torch_reference.model_from_bundle(directory)
    torch.set_num_threads(threads)
    merged = merged_graph.full_render_model(directory)
    diff = torch_reference.parity(model, renderer)
    x = np.random.default_rng(7).random((4, 4, 3, renderer.image_size, renderer.image_size), dtype=np.float32)
    merged_diff = float(np.abs(merged_graph.ort_session(merged, threads, False).run(
        None, dict(zip(merged_graph.INPUTS, x)))[0] - renderer.render_arrays(*x)).max())
    results["parity"] = {"max_abs_diff_render": diff, "merged_max_abs_diff_render": merged_diff,
                         "tolerance": PARITY_TOLERANCE,
                         "passed": max(diff, merged_diff) <= PARITY_TOLERANCE, "weights": found,
                         "merged_nodes": len(merged.graph.node)}
    step("rows, in interleaved rounds")
    results["rows"], results["not_measured"], results["compile"] = rows(args, model, merged, threads)

    if not args.skip_motion_check:
        step("the motion check: full renders with it")
        results["motion_check"] = motion_check(args, model, threads)

    step("FLOPs")
    reader = None
    if "reader" in renderer.manifest.graphs:  # FLOPs do not depend on the weights
        reader = MotionReader(model.cfg, ReaderConfig.from_dict(renderer.manifest.evaluation["reader"]["reader_config"]))
    per_graph = flops.graph_flops(model, reader)
    results["flops"] = {"method": "torch.utils.flop_counter.FlopCounterMode on the PyTorch modules; "
                                  "convolutions and matrix products, 1 multiply-add = 2 FLOP",
                        "per_graph_batch1": per_graph, "per_render": flops.path_flops(per_graph)}
    results["environment"]["load_average_at_end"] = os.getloadavg()
    results["above_peak"] = report.check_peaks(results)
    results["targets"] = report.targets(results)
    return results


def motion_check(args, model, threads: int) -> dict:
    """Full renders with the motion check, ONNX Runtime then PyTorch eager batched as eqsdk
    batches (torch_reference.checked_full_render), at each batch size (random frames: the
    check's cost does not depend on what it finds)."""
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
            out[str(batch)]["torch_eager"] = time_calls(lambda: torch_reference.checked_full_render(model, *x),
                                                        args.runs, args.warmup, args.budget)
    return out


QUICK = {"runs": 8, "warmup": 2, "budget": 0.1, "batch": [1, 32], "rounds": 3, "round_s": 0.3,
         "peak_n": 1024, "peak_trials": 3, "compile_mode": "default", "skip_int8": True,
         "skip_motion_check": True}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist", help="bundled model name or bundle directory")
    p.add_argument("--out", type=Path, required=True, help="directory for results.json/.md, latency.png")
    p.add_argument("--quick", action="store_true",
                   help="a rehearsal, about 3 minutes on quiet cores (torch.compile of the bf16 row "
                        "only, default mode): " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--runs", type=int, default=200, help="most timed runs per measurement (per round for rows)")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs before each measurement")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds per eqsdk bench measurement: slower ones get fewer runs, at least 20 "
                        "(0: always --runs)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the rows")
    p.add_argument("--round-s", type=float, default=1.0, help="seconds per row per round")
    p.add_argument("--spread-limit", type=float, default=0.15,
                   help="a row whose round medians spread by more than this fraction of their median "
                        "is unreliable: reported, not scored")
    p.add_argument("--compile-mode", default="max-autotune-no-cudagraphs",
                   help="torch.compile mode of the fp32 compiled row (bf16 runs mode default)")
    p.add_argument("--skip-compile", action="store_true", help="no torch.compile rows")
    p.add_argument("--skip-int8", action="store_true", help="no int8 quantization and measurement")
    p.add_argument("--skip-motion-check", action="store_true", help="no full renders with the motion check")
    p.add_argument("--calibration", type=int, default=256, help="int8 calibration frames")
    p.add_argument("--examples", type=int, default=500, help="test examples for the int8 quality cost")
    p.add_argument("--peak-n", type=int, default=2048, help="matrix size of the peak products")
    p.add_argument("--peak-trials", type=int, default=9, help="trials per peak kernel")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
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
