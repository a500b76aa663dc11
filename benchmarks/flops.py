"""FLOPs of the model's graphs and paths, and the machine's measured matrix-product peaks.

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode on the PyTorch modules: it
counts convolutions (transposed included), matrix products and linear layers, at 2 FLOP per
multiply-add. Element-wise work (ReLU, adds, GroupNorm, softmax, grid_sample) is not counted; it
is well under 1% of this model's total. FLOPs are linear in the batch, so they are counted at
batch 1 and scaled.

The peak is what a large matrix product achieves here, not a datasheet figure: the best of
several timed 2048x2048 products (torch.matmul with the benchmark's threads, numpy @, and ONNX
Runtime's MatMul), the same for bf16 (torch) and for int8 (ONNX Runtime MatMulInteger, u8 x s8,
which MLAS runs with AVX512-VNNI where the CPU has it). Integer operations count like FLOPs.
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
    "background": [("f_b", 1), ("warp", 1), ("g", 1)],
}


def count(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(*args)
    return int(counter.get_total_flops())


def graph_flops(model) -> dict[str, int]:
    """FLOPs of each graph on one input (batch 1): the exporter's modules and example inputs."""
    return {name: count(module, *example_inputs(name, model.cfg, batch=1).values())
            for name, module in graph_modules(model).items()}


def path_flops(per_graph: dict[str, int]) -> dict[str, int]:
    """FLOPs per render of each path, and of each graph call as eqsdk.bench times it
    ('graph:f_c' runs f_c on three images per batch item)."""
    out = {p: sum(per_graph[g] * n for g, n in calls) for p, calls in PATHS.items()}
    out.update({f"graph:{g}": per_graph[g] * (3 if g == "f_c" else 1) for g in per_graph})
    return out


def best_rate(fn, ops: float, runs: int) -> float:
    """ops / the fastest of `runs` timed calls, in G per second (after one warm-up call)."""
    fn()
    best = min(timed(fn) for _ in range(runs))
    return ops / best / 1e9


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ort_matmul(n: int, threads: int, integer: bool):
    """A one-node ONNX Runtime session: (n, n) @ constant (n, n), fp32 MatMul or u8 x s8
    MatMulInteger; returns a callable."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from eqsdk.backends.ort_cpu import session_options

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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a})


def peaks(threads: int, n: int = 2048, runs: int = 10) -> dict:
    """Measured GFLOP/s (GOP/s for int8) of (n, n) @ (n, n) products; see the module doc."""
    torch.set_num_threads(threads)
    ops = 2.0 * n ** 3
    a, b = torch.rand(n, n), torch.rand(n, n)
    an, bn = a.numpy(), b.numpy()
    out = {"n": n, "runs": runs, "threads": threads,
           "torch_fp32": best_rate(lambda: torch.matmul(a, b), ops, runs),
           "numpy_fp32": best_rate(lambda: an @ bn, ops, runs),
           "ort_fp32": best_rate(ort_matmul(n, threads, False), ops, runs)}
    a16, b16 = a.bfloat16(), b.bfloat16()
    out["torch_bf16"] = best_rate(lambda: torch.matmul(a16, b16), ops, runs)
    out["ort_int8"] = best_rate(ort_matmul(n, threads, True), ops, runs)
    out["fp32_peak"] = max(out["torch_fp32"], out["numpy_fp32"], out["ort_fp32"])
    out["fp32_peak_source"] = max(("torch_fp32", "numpy_fp32", "ort_fp32"), key=out.get)
    out["numpy_threads"] = "numpy's BLAS default (all cores unless OPENBLAS_NUM_THREADS is set)"
    return out


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
