"""ONNX Runtime with the CUDA execution provider (the onnxruntime-gpu package); tensors stay on the
GPU between graphs.

Tensors are DeviceArrays whose owner is an OrtValue in CUDA memory. Outputs are bound to the device
through an IOBinding, so ONNX Runtime allocates them there; inputs are bound by address, so split()
returns views (an address offset into the same OrtValue) without a copy. concat and repeat go
through the host: ONNX Runtime's Python API has no device-to-device copy, and the tensors are
small (64 KB per item at 64 x 16 x 16 features), so the round trip costs little next to a graph.

ONNX Runtime quietly runs a session on the CPU when the CUDA provider cannot load (a missing CUDA
or cuDNN library); every session is checked, and that is an error here, never a fallback.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eqsdk.backends.base import Backend, DeviceArray
from eqsdk.backends.ort_cpu import open_session, session_options
from eqsdk.errors import BackendError
from eqsdk.graphs import GRAPHS
from eqsdk.manifest import Manifest


class OrtCudaBackend(Backend):
    name = "cuda"
    device = "cuda"  # ONNX Runtime's name for where tensors live (IOBinding, OrtValue)
    # Inputs bound by address must start where a vectorised (16-byte) load can; a view that does
    # not is copied. ONNX Runtime's CUDA allocations are 256-byte aligned.
    alignment = 16

    def __init__(self, directory: Path, manifest: Manifest, device_id: int = 0):
        super().__init__(directory, manifest)
        self.device_id = device_id
        providers = self.providers()
        self.provider = providers[0] if isinstance(providers[0], str) else providers[0][0]
        opts = session_options()
        self.sessions = {}
        for g in manifest.graphs:
            session = open_session(self.graph_path(g), g, manifest.config, opts, providers)
            if session.get_providers()[0] != self.provider:
                raise BackendError(f"{self.graph_path(g)}: ONNX Runtime fell back to "
                                   f"{session.get_providers()} instead of {self.provider} (are "
                                   "the CUDA and cuDNN libraries onnxruntime-gpu needs installed?)")
            self.sessions[g] = session
        self._outputs = {g: list(GRAPHS[g].outputs) for g in manifest.graphs}

    def providers(self) -> list:
        # No TF32: its 10-bit mantissa in convolutions would miss fp32 parity with the CPU (1e-4).
        return [("CUDAExecutionProvider", {"device_id": self.device_id, "use_tf32": 0})]

    def run(self, graph: str, **inputs: DeviceArray) -> dict[str, DeviceArray]:
        session = self.sessions[graph]
        binding = session.io_binding()  # one per call: sessions may run from many threads, bindings not
        inputs = {k: v if v.aligned(self.alignment) else self.upload(self.download(v))
                  for k, v in inputs.items()}
        for name, t in inputs.items():  # bound by address: `inputs` keeps the memory alive
            binding.bind_input(name, self.device, self.device_id, np.float32, list(t.shape), t.ptr)
        for name in self._outputs[graph]:
            binding.bind_output(name, self.device, self.device_id)
        session.run_with_iobinding(binding)  # returns once the outputs are complete
        return {name: DeviceArray(v.data_ptr(), tuple(v.shape()), v)
                for name, v in zip(self._outputs[graph], binding.get_outputs())}

    def describe(self) -> str:
        import onnxruntime as ort

        return f"ONNX Runtime {ort.__version__} {self.provider}, device {self.device_id}, fp32"

    def upload(self, a: np.ndarray) -> DeviceArray:
        import onnxruntime as ort

        a = np.ascontiguousarray(a, dtype=np.float32)
        value = ort.OrtValue.ortvalue_from_numpy(a, self.device, self.device_id)
        return DeviceArray(value.data_ptr(), a.shape, value)

    def download(self, t: DeviceArray) -> np.ndarray:
        # The owner's whole buffer comes to the host, then t's rows are cut out of it; copied, as
        # on the CPU numpy() shares the OrtValue's memory.
        start = (t.ptr - t.owner.data_ptr()) // 4
        flat = t.owner.numpy().reshape(-1)
        return flat[start:start + t.nbytes // 4].reshape(t.shape).copy()

    def split(self, t: DeviceArray, parts: int) -> list[DeviceArray]:
        return t.split(parts)

    def concat(self, tensors: list[DeviceArray]) -> DeviceArray:
        if len(tensors) == 1:
            return tensors[0]
        return self.upload(np.concatenate([self.download(t) for t in tensors]))  # see the module doc

    def repeat(self, t: DeviceArray, n: int) -> DeviceArray:
        return t if n == 1 else self.upload(np.repeat(self.download(t), n, axis=0))

    def batch_size(self, t: DeviceArray) -> int:
        return t.shape[0]
