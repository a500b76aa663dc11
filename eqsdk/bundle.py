"""Model bundles: a directory of the graphs and a manifest (eqsdk.manifest). Finds and loads them."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from eqsdk.errors import BundleError
from eqsdk.manifest import MANIFEST, SCHEMA_VERSION, Manifest, read_manifest

__all__ = ["MODELS", "DEFAULT_MODEL", "MANIFEST", "SCHEMA_VERSION", "Manifest", "bundle_dir",
           "read_manifest", "load"]

# The one registry of bundled models: the loader, the CLI's help and checks read it.
MODELS = {
    "mnist": "Moving MNIST digits on diamond backgrounds, 64x64",
    "sprites": "LPC game characters on a white canvas, 64x64 (no backgrounds)",
    "sprites-bg": "LPC game characters on diamond backgrounds, 64x64",
}
DEFAULT_MODEL = "mnist"


def bundle_dir(model: str | Path) -> Path:
    """The directory of a bundled model's name, or of a bundle path."""
    if isinstance(model, str) and model in MODELS:
        return Path(str(files("eqsdk") / "models" / model))
    path = Path(model)
    if path.is_dir():
        return path
    if path.exists():
        raise BundleError(f"model {str(model)!r} is a file; expected a bundle directory "
                          f"or one of: {', '.join(MODELS)}")
    raise BundleError(f"unknown model {str(model)!r}: expected one of {', '.join(MODELS)} "
                      "or the path of a bundle directory")


def load(model: str | Path = DEFAULT_MODEL, backend: str = "cpu", threads: int | None = None,
         precision: str = "auto", check_motion: bool = False, reader: bool = False):
    """Load a model bundle for rendering.

    model: a bundled model's name (see eqsdk.MODELS) or a bundle directory.
    backend: "cpu" (ONNX Runtime, default), "cuda" (ONNX Runtime CUDA), "tensorrt", "openvino"
        (OpenVINO on the CPU), or "auto" for the best available; one that is not available raises
        BackendError with an install hint.
    threads: CPU intra-op threads per graph (default: what suits four small chained graphs).
    precision: "auto" (default: bf16 on OpenVINO where the CPU has bf16 instructions, whose
        measured cost is about 2% of Background MSE; fp32 on every other backend), "fp32" (exact
        on every backend), "fp16" on TensorRT, or "bf16" on OpenVINO.
    check_motion: check T^Z's reading of each motion by rendering turns of it (eqsdk.motion_check):
        truer far turns, about 5x the render time. Off by default.
    reader: read the motion of drive's and animate's driving frames with the bundle's motion
        reader (reader.onnx, a small network distilled from f_c and T^Z) instead of f_c and T^Z:
        faster per frame, at the quality cost its model card states. Off by default.
    """
    import time

    from eqsdk.backends import create
    from eqsdk.renderer import Renderer

    t0 = time.perf_counter()
    directory = bundle_dir(model)
    manifest = read_manifest(directory)
    runtime = create(backend, directory, manifest, threads, precision)
    return Renderer(runtime, manifest, load_seconds=time.perf_counter() - t0, check_motion=check_motion,
                    reader=reader)
