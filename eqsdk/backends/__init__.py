"""Runtimes that run a bundle's graphs: ONNX Runtime on the CPU (default) or CUDA, TensorRT, and
OpenVINO on the CPU.

    backend = create("auto", directory, manifest)   # best available: tensorrt, cuda, openvino, cpu

A backend that was asked for and is not available is an error with an install hint, never a
silent fallback.
"""
from __future__ import annotations

from pathlib import Path

from eqsdk.errors import BackendError
from eqsdk.manifest import Manifest

BACKENDS = ("cpu", "cuda", "tensorrt", "openvino")
AUTO_ORDER = ("tensorrt", "cuda", "openvino", "cpu")
# The precisions each backend runs: fp32 everywhere; reduced ones where the runtime has them.
PRECISIONS = {"cpu": ("fp32",), "cuda": ("fp32",), "tensorrt": ("fp32", "fp16"),
              "openvino": ("fp32", "bf16")}
INSTALL_HINTS = {
    "cpu": "pip install onnxruntime",
    "cuda": "pip uninstall onnxruntime && pip install 'eqsdk[cuda]' (onnxruntime-gpu; needs an "
            "NVIDIA GPU with its CUDA 12 driver)",
    "tensorrt": "pip install 'eqsdk[tensorrt]' (tensorrt and cuda-python; needs an NVIDIA GPU)",
    "openvino": "pip install 'eqsdk[openvino]'",
}


def unavailable_reason(name: str) -> str | None:
    """None if the backend can run here, else why not (one line)."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; expected auto or one of {', '.join(BACKENDS)}"
    if name == "tensorrt":
        from eqsdk.backends.tensorrt import unavailable_reason as trt_reason

        return trt_reason()
    if name == "openvino":
        from eqsdk.backends.openvino import unavailable_reason as openvino_reason

        return openvino_reason()
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    provider = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[name]
    if provider not in ort.get_available_providers():
        return f"this onnxruntime ({ort.__version__}) has no {provider}"
    return None


def available() -> dict[str, str | None]:
    """Every backend -> None if it can run here, else the reason it cannot."""
    return {name: unavailable_reason(name) for name in BACKENDS}


def resolve_name(name: str) -> str:
    """`name`, checked to be available (an error with an install hint if it is not)."""
    reason = unavailable_reason(name)
    if reason is not None:
        hint = f"; install: {INSTALL_HINTS[name]}" if name in INSTALL_HINTS else ""
        raise BackendError(f"backend {name!r} is not available: {reason}{hint}")
    return name


def default_precision(name: str) -> str:
    """What precision="auto" runs on a backend: bf16 on OpenVINO where the CPU has bf16
    instructions (on the mnist test set it moves Transformation MSE by -0.1% and Background MSE
    by +2.3%, at 2-4x the speed: benchmarks/results/precision_quality.md), fp32 everywhere else
    (TensorRT's fp16 is not yet measured on a GPU)."""
    if name == "openvino":
        from eqsdk.backends.openvino import has_bf16

        return "bf16" if has_bf16() else "fp32"
    return "fp32"


def create(name: str, directory: Path, manifest: Manifest, threads: int | None = None,
           precision: str = "auto"):
    """A backend running the bundle in `directory`; see the module doc. "auto" tries the
    available ones best first, and goes on to the next when one fails to start (say a GPU
    runtime whose libraries are missing); the backend's describe() says which it got.
    precision "auto" is each backend's default_precision; "fp32" is exact everywhere."""
    every = sorted({p for ps in PRECISIONS.values() for p in ps})
    if precision != "auto" and precision not in every:
        raise BackendError(f"precision {precision!r}; expected auto or one of {', '.join(every)}")
    if name == "auto":
        candidates = [n for n in AUTO_ORDER if unavailable_reason(n) is None
                      and (precision == "auto" or precision in PRECISIONS[n])]
        failures = []
        for n in candidates:
            try:
                return create(n, directory, manifest, threads, precision)
            except BackendError as e:
                failures.append(str(e))
        raise BackendError(f"no backend could run {precision}: " + ("; ".join(failures) or "none available"))
    name = resolve_name(name)
    if precision == "auto":
        precision = default_precision(name)
    if precision not in PRECISIONS[name]:
        runs_it = [n for n, ps in PRECISIONS.items() if precision in ps]
        raise BackendError(f"precision {precision} runs on the {' or '.join(runs_it)} backend "
                           f"only, not {name!r}")
    if name == "cpu":
        from eqsdk.backends.ort_cpu import OrtCpuBackend

        return OrtCpuBackend(directory, manifest, threads)
    if name == "cuda":
        from eqsdk.backends.ort_cuda import OrtCudaBackend

        return OrtCudaBackend(directory, manifest)
    if name == "openvino":
        from eqsdk.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(directory, manifest, threads, precision)
    from eqsdk.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(directory, manifest, precision)
