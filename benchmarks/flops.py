"""FLOPs of the model's graphs and paths, and the machine's measured matrix-product peaks.

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode on the PyTorch modules: it
counts convolutions (transposed included), matrix products and linear layers, at 2 FLOP per
multiply-add. Element-wise work (ReLU, adds, GroupNorm, softmax, grid_sample) is not counted; it
is well under 1% of this model's total. FLOPs are linear in the batch, so they are counted at
batch 1 and scaled.

The peak is what a large matrix product sustains here with the benchmark's threads, not a
datasheet figure, per precision: fp32 from torch.matmul and ONNX Runtime's MatMul, bf16 from
torch.matmul on bf16 tensors and OpenVINO's MatMul at bf16 inference precision, int8 from ONNX
Runtime's MatMulInteger (u8 x s8, AVX512-VNNI where the CPU has it). Each kernel's figure is the
median of repeated trials taken in turns; a precision's peak is its best kernel's figure. A row
of the suite above its precision's peak shows the peak to be wrong: raise_peaks raises it to that
row's figure and names the row. Integer operations count like FLOPs.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from export.to_onnx import example_inputs, graph_modules

# Graph calls of each path, as (graph, images or feature maps per render): f_c encodes three
# images for a full render and two frames for a new motion (see eqsdk.renderer).
PATHS = {
    "full": [("f_c", 3), ("f_b", 1), ("t_z", 1), ("g", 1)],
    "motion": [("f_c", 2), ("t_z", 1), ("g", 1)],
    "drive": [("f_c", 1), ("t_z", 1), ("g", 1)],
    "drive_reader": [("reader", 1), ("warp", 1), ("g", 1)],
    "background": [("f_b", 1), ("warp", 1), ("g", 1)],
}


def count(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(*args)
    return int(counter.get_total_flops())


def graph_flops(model, reader=None) -> dict[str, int]:
    """FLOPs of each graph on one input (batch 1): the exporter's modules and example inputs, and
    the motion reader's where one is given."""
    modules = {**graph_modules(model), **({"reader": reader} if reader is not None else {})}
    return {name: count(module, *example_inputs(name, model.cfg, batch=1).values())
            for name, module in modules.items()}


def path_flops(per_graph: dict[str, int]) -> dict[str, int]:
    """FLOPs per render of each path, and of each graph call as eqsdk.bench times it
    ('graph:f_c' runs f_c on three images per batch item)."""
    out = {p: sum(per_graph[g] * n for g, n in calls) for p, calls in PATHS.items()
           if all(g in per_graph for g, _ in calls)}
    out.update({f"graph:{g}": per_graph[g] * (3 if g == "f_c" else 1) for g in per_graph})
    return out


def trial_rates(kernels: dict, ops: float, trials: int, calls: int) -> dict[str, list[float]]:
    """G/s of each kernel in `trials` trials of `calls` back-to-back calls, the kernels taking turns
    trial by trial (k1 k2 k3 k1 k2 k3 ...) so that a change of load hits them alike."""
    for fn in kernels.values():
        fn()  # warm-up: allocations, packing, thread pools
    rates = {name: [] for name in kernels}
    for _ in range(trials):
        for name, fn in kernels.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            rates[name].append(ops * calls / (time.perf_counter() - t0) / 1e9)
    return rates


def ort_matmul(n: int, threads: int, integer: bool):
    """A one-node ONNX Runtime session: (n, n) @ constant (n, n), fp32 MatMul or u8 x s8
    MatMulInteger; returns a callable."""
    import onnxruntime as ort

    from eqsdk.backends.ort_cpu import session_options

    a, model = matmul_model(n, integer)
    session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a})


def matmul_model(n: int, integer: bool):
    """(input a, ONNX model y = a @ b with b a constant): fp32 MatMul or u8 x s8 MatMulInteger."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        a = rng.integers(0, 256, (n, n), dtype=np.uint8)
        b = rng.integers(-128, 128, (n, n), dtype=np.int8)
        node, a_type, y_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
    else:
        a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
        node, a_type, y_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node(node, ["a", "b"], ["y"])], "mm",
                              [helper.make_tensor_value_info("a", a_type, [n, n])],
                              [helper.make_tensor_value_info("y", y_type, [n, n])],
                              [numpy_helper.from_array(b, "b")])
    return a, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def openvino_matmul(n: int, threads: int):
    """OpenVINO's CPU plugin running an fp32 (n, n) @ (n, n) MatMul at bf16 inference precision
    (what eqsdk's openvino backend asks for with precision="bf16"); None where it cannot."""
    from eqsdk.backends.openvino import PRECISIONS, has_bf16, unavailable_reason

    if unavailable_reason() is not None:
        return None
    import openvino as ov

    core = ov.Core()
    if not has_bf16(core):
        return None
    a, model = matmul_model(n, integer=False)
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": PRECISIONS["bf16"],
                                   "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                   "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False})
    request = compiled.create_infer_request()
    return lambda: request.infer({0: a})


# The kernels behind each peak, by precision. fp32 uses no numpy: its BLAS is whatever the
# environment provides (often OpenBLAS on every core), not what a model runtime runs here.
KERNELS = {"fp32": ("torch.matmul fp32", "onnxruntime MatMul fp32"),
           "bf16": ("torch.matmul bf16", "openvino MatMul bf16"),
           "int8": ("onnxruntime MatMulInteger u8xs8",)}


def peaks(threads: int, n: int = 2048, trials: int = 7, calls: int = 3) -> dict:
    """The machine's measured peak per precision: each kernel's median rate over `trials` trials
    of `calls` (n, n) @ (n, n) products on `threads` threads (trial_rates), and the best kernel's
    median as the peak, with its name. GFLOP/s (GOP/s for int8)."""
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    kernels = {"torch.matmul fp32": lambda: torch.matmul(a, b),
               "onnxruntime MatMul fp32": ort_matmul(n, threads, False),
               "torch.matmul bf16": lambda: torch.matmul(a16, b16),
               "openvino MatMul bf16": openvino_matmul(n, threads),
               "onnxruntime MatMulInteger u8xs8": ort_matmul(n, threads, True)}
    missing = [k for k, fn in kernels.items() if fn is None]
    rates = trial_rates({k: fn for k, fn in kernels.items() if fn is not None}, 2.0 * n ** 3, trials, calls)
    out = {"n": n, "trials": trials, "calls_per_trial": calls, "threads": threads, "not_measured": missing,
           "kernels": {k: {"median": float(np.median(r)), "min": float(min(r)), "max": float(max(r)),
                           "trials": [round(x, 1) for x in r]} for k, r in rates.items()},
           "peak": {}}
    for precision, names in KERNELS.items():
        measured = [k for k in names if k in rates]
        best = max(measured, key=lambda k: out["kernels"][k]["median"])
        out["peak"][precision] = {"value": out["kernels"][best]["median"], "source": best, "raised_by": None}
    return out


def raise_peaks(peak: dict, rates: dict[str, tuple[str, float]]) -> list[str]:
    """A row that runs faster than its precision's measured peak shows the peak is wrong: the peak
    is raised to that row's rate (peak["peak"][precision]["raised_by"] names it) and the row is
    returned. rates: {row: (precision, G(FL)OP/s)}, rows of unreliable rounds left out."""
    above = []
    for row, (precision, rate) in sorted(rates.items(), key=lambda kv: kv[1][1]):
        entry = peak["peak"][precision]
        if rate > entry["value"]:
            entry.update(measured=entry.get("measured", entry["value"]), value=rate, raised_by=row)
            above.append(row)
    return above


def cpu_info() -> dict:
    """Model, core count and the instruction-set flags that matter here, from /proc/cpuinfo."""
    import os

    info = {"model": "?", "cores": os.cpu_count(), "flags": []}
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
              "amx_int8", "avx512_fp16")
    info.update(model=fields.get("model name", "?"), family=fields.get("cpu family"),
                model_number=fields.get("model"),
                flags=[f for f in wanted if f in fields.get("flags", "").split()],
                missing_flags=[f for f in wanted if f not in fields.get("flags", "").split()])
    return info
