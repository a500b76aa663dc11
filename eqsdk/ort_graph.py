"""One ONNX graph run by ONNX Runtime on the CPU, called with keyword inputs named as in the graph."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from eqsdk.errors import BundleError
from eqsdk.graphs import GraphSpec


def default_threads() -> int:
    # The graphs are small (tens of MFLOP at batch 1): two threads at most, and no spinning
    # (set below), which otherwise leaves four chained sessions fighting over the cores.
    return max(1, min(2, os.cpu_count() or 1))


class OrtGraph:
    def __init__(self, path: Path, spec: GraphSpec, threads: int | None = None,
                 spinning: bool = False):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise BundleError(f"{path}: not a loadable ONNX graph ({str(e).splitlines()[0]})") from None
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != list(spec.inputs) or got_out != list(spec.outputs):
            raise BundleError(f"{path}: graph interface {got_in} -> {got_out}, expected "
                              f"{list(spec.inputs)} -> {list(spec.outputs)} for {spec.name!r}")
        self.spec = spec
        self._outputs = list(spec.outputs)

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self.session.run(self._outputs, inputs)))
