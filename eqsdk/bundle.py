"""Model bundles: a directory of the four graphs and a manifest. Finds, checks and loads them."""
from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path

from eqsdk.errors import BundleError
from eqsdk.graphs import GRAPHS

MANIFEST = "manifest.json"
SCHEMA_VERSION = 2  # 2: adds the warp graph
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


def read_manifest(directory: Path) -> dict:
    """The manifest of a bundle, after checking its schema and every graph file's sha256."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; a bundle directory holds {MANIFEST} and "
                          f"{', '.join(s.file for s in GRAPHS.values())}") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable manifest ({e})") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{path}: schema_version {version!r}, expected {SCHEMA_VERSION}")
    missing = set(GRAPHS) - set(manifest.get("graphs", {}))
    if missing:
        raise BundleError(f"{path}: no entry for graphs {sorted(missing)}")
    for name, entry in manifest["graphs"].items():
        graph = directory / entry["file"]
        if not graph.is_file():
            raise BundleError(f"{graph}: missing graph file of {name!r}")
        digest = hashlib.sha256(graph.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise BundleError(f"{graph}: sha256 {digest[:12]}… does not match the manifest's "
                              f"{entry['sha256'][:12]}…: the file is truncated or modified")
    return manifest


def load(model: str | Path = DEFAULT_MODEL, backend: str = "cpu", threads: int | None = None,
         precision: str = "fp32", check_motion: bool = False):
    """Load a model bundle for rendering.

    model: a bundled model's name (see eqsdk.MODELS) or a bundle directory.
    backend: "cpu" (ONNX Runtime, default), "cuda" (ONNX Runtime CUDA), "tensorrt", or "auto" for
        the best available; one that is not available raises BackendError with an install hint.
    threads: CPU intra-op threads per graph (default: what suits four small chained graphs).
    precision: "fp32", or "fp16" on TensorRT.
    check_motion: check T^Z's reading of each motion by rendering turns of it (eqsdk.motion_check):
        truer far turns, about 5x the render time. Off by default.
    """
    import time

    from eqsdk.backends import create
    from eqsdk.renderer import Renderer

    t0 = time.perf_counter()
    directory = bundle_dir(model)
    manifest = read_manifest(directory)
    runtime = create(backend, directory, manifest, threads, precision)
    return Renderer(runtime, manifest, load_seconds=time.perf_counter() - t0, check_motion=check_motion)
