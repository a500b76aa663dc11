"""ONNX Runtime on the CPU: the default backend, and the reference the others are checked against."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from eqsdk.backends.base import Backend, check_interface
from eqsdk.errors import BundleError
from eqsdk.graphs import GRAPHS
from eqsdk.manifest import Manifest


def default_threads() -> int:
    # The graphs are small (tens of MFLOP at batch 1): two threads at most, and no spinning
    # (set below), which otherwise leaves four chained sessions fighting over the cores.
    return max(1, min(2, os.cpu_count() or 1))


def session_options(threads: int | None = None, spinning: bool = False):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3
    return opts


def open_session(path: Path, graph: str, config: dict, opts, providers: list):
    """An InferenceSession whose interface is checked against GRAPHS and the bundle's config."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own untyped errors for bad files
        raise BundleError(f"{path}: not a loadable ONNX graph ({str(e).splitlines()[0]})") from None
    shape = lambda v: [d if isinstance(d, int) else None for d in v.shape]  # noqa: E731
    check_interface(path, graph, {i.name: shape(i) for i in session.get_inputs()},
                    {o.name: shape(o) for o in session.get_outputs()}, config)
    return session


class OrtCpuBackend(Backend):
    name = "cpu"

    def __init__(self, directory: Path, manifest: Manifest, threads: int | None = None,
                 spinning: bool = False):
        super().__init__(directory, manifest)
        self.threads = threads or default_threads()
        mixed = manifest.precision  # a quantised bundle: {"int8": [graphs], ...}
        self.precision = mixed if isinstance(mixed, str) else "int8 (" + ", ".join(mixed["int8"]) + ")"
        opts = session_options(self.threads, spinning)
        self.sessions = {g: open_session(self.graph_path(g), g, manifest.config, opts,
                                         ["CPUExecutionProvider"]) for g in manifest.graphs}
        self._outputs = {g: list(GRAPHS[g].outputs) for g in manifest.graphs}

    def run(self, graph: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        names = self._outputs[graph]
        return dict(zip(names, self.sessions[graph].run(names, inputs)))

    def describe(self) -> str:
        import onnxruntime as ort

        return f"ONNX Runtime {ort.__version__} CPUExecutionProvider, {self.threads} threads, {self.precision}"
