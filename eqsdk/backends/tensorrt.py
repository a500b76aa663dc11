"""TensorRT: one engine per graph, built from the bundle's ONNX on first use and cached on disk.

    backend = TensorRTBackend(directory, manifest, precision="fp16")

Engines live in $EQSDK_CACHE, else ~/.cache/eqsdk/engines, named by a key of what makes one valid:
the ONNX file's sha256, the TensorRT version, the GPU's compute capability, the precision and the
batch profile (an engine runs only with the TensorRT and GPU it was built for). A cached file that
does not deserialize or whose key differs is rebuilt. A timing cache beside them makes rebuilds
fast.

fp16: TensorRT 10 builds the fp32 graph with BuilderFlag.FP16 and picks each layer's precision.
TensorRT 11 removed that flag (networks are strongly typed: the ONNX's types decide), so the graph
is converted to fp16 first, with a float32 interface (eqsdk.backends.fp16).

Tensors are DeviceArrays in cudaMalloc'd memory (cuda-python). Threads: each thread gets its own
CUDA stream and execution contexts (since TensorRT 10 contexts may share an optimisation profile),
and every call synchronises its stream before it returns, so a tensor is complete when a caller
gets it and can be handed to another thread. The engines are shared.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from eqsdk.backends.base import Backend, DeviceArray, check_interface
from eqsdk.errors import BackendError
from eqsdk.images import replacing
from eqsdk.graphs import GRAPHS
from eqsdk.manifest import Manifest

MAX_BATCH = 64  # the optimisation profile's largest batch; larger ones run in chunks of it
BUILD_FORMAT = 1  # in the cache key: bump when the build settings below change


def unavailable_reason() -> str | None:
    """None if TensorRT can run here, else why not (one line)."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:  # OSError: the package is there, its libraries are not
        return f"tensorrt is not importable ({e})"
    if trt_major(trt.__version__) < 10:
        return f"tensorrt {trt.__version__} is too old; 10 or newer is needed"
    try:
        rt = cudart()
    except ImportError as e:
        return f"cuda-python is not importable ({e})"
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess or count == 0:
        return f"no CUDA device ({getattr(err, 'name', err)})"
    return None


def cudart():
    """The CUDA runtime bindings of cuda-python."""
    try:
        from cuda.bindings import runtime  # cuda-python 12.6 and later
    except ImportError:
        from cuda import cudart as runtime  # earlier releases
    return runtime


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def default_cache() -> Path:
    env = os.environ.get("EQSDK_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "eqsdk" / "engines"


def engine_key(onnx_sha256: str, trt_version: str, compute_capability: str, precision: str,
               max_batch: int = MAX_BATCH) -> str:
    """What an engine is valid for, hashed: a different value of any part needs another engine."""
    parts = [BUILD_FORMAT, onnx_sha256, trt_version, compute_capability, precision, max_batch]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def check(result, what: str):
    """cuda-python returns (error, *values): raise on an error, else the value (or values)."""
    err, *values = result
    if err != cudart().cudaError_t.cudaSuccess:
        raise BackendError(f"CUDA {what} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else tuple(values)


def current_gpu() -> tuple[str, str]:
    """(name, compute capability "major.minor") of the current CUDA device."""
    rt = cudart()
    prop = check(rt.cudaGetDeviceProperties(check(rt.cudaGetDevice(), "cudaGetDevice")),
                 "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace").rstrip("\0") if isinstance(prop.name, bytes) else prop.name
    return str(name), f"{prop.major}.{prop.minor}"


_LOGGER = None


def logger():
    global _LOGGER  # one per process: TensorRT expects every builder and runtime to share it
    if _LOGGER is None:
        import tensorrt as trt

        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def build_engine(onnx_bytes: bytes, precision: str, max_batch: int = MAX_BATCH,
                 timing_cache: Path | None = None, opt_batch: int = 1) -> bytes:
    """A serialized engine of an ONNX graph whose inputs have a dynamic batch (dim 0): profile
    1..max_batch tuned at opt_batch. `timing_cache` (a file) is read if present and updated."""
    import tensorrt as trt

    strongly_typed = trt_major(trt.__version__) >= 11
    if precision == "fp16" and strongly_typed:
        onnx_bytes = fp16_onnx(onnx_bytes)
    builder = trt.Builder(logger())
    network = builder.create_network(0)  # explicit batch: the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger())
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse the graph: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; would miss fp32 parity (1e-4)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        item = tuple(tensor.shape)[1:]  # (C, H, W): fixed by the model's config
        profile.set_shape(tensor.name, (1, *item), (opt_batch, *item), (max_batch, *item))
    config.add_optimization_profile(profile)
    cached = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cached) or config.create_timing_cache(b"")  # unreadable: anew
    config.set_timing_cache(cache, ignore_mismatch=True)  # a stale cache only costs time
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError("TensorRT failed to build the engine (see its log above)")
    if timing_cache:
        write_atomic(timing_cache, bytes(cache.serialize()))
    return bytes(plan)


def fp16_onnx(onnx_bytes: bytes) -> bytes:
    try:
        import onnx

        from eqsdk.backends.fp16 import to_fp16
    except ImportError:
        raise BackendError("fp16 on TensorRT 11 converts the graph with the onnx package: "
                           "pip install onnx") from None
    return to_fp16(onnx.load_from_string(onnx_bytes)).SerializeToString()


def write_atomic(path: Path, data: bytes) -> None:
    """Write, then rename into place: a reader (another process) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_bytes(data)


class Allocation:
    """cudaMalloc'd memory, freed when the last DeviceArray over it is collected."""

    def __init__(self, nbytes: int):
        rt, self.ptr = cudart(), None
        self._free = rt.cudaFree  # held: at interpreter exit the module can go before this object
        self.ptr = check(rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc")

    def __del__(self):
        if self.ptr is not None:
            self._free(self.ptr)  # cuda-python returns errors, never raises; none to act on here


class Stream:
    """A CUDA stream, destroyed with its thread's state."""

    def __init__(self):
        rt, self.stream = cudart(), None
        self._destroy = rt.cudaStreamDestroy
        self.stream = check(rt.cudaStreamCreate(), "cudaStreamCreate")
        self.handle = int(self.stream)  # the address TensorRT's execute_async_v3 takes

    def sync(self) -> None:
        check(cudart().cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def __del__(self):
        if self.stream is not None:
            self._destroy(self.stream)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, directory: Path, manifest: Manifest, precision: str = "fp32",
                 max_batch: int = MAX_BATCH, cache: Path | None = None):
        super().__init__(directory, manifest)
        reason = unavailable_reason()
        if reason is not None:
            from eqsdk.backends import INSTALL_HINTS

            raise BackendError(f"backend 'tensorrt' is not available: {reason}; "
                               f"install: {INSTALL_HINTS['tensorrt']}")
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"precision {precision!r}; expected fp32 or fp16")
        import tensorrt as trt

        self.trt, self.precision, self.max_batch = trt, precision, max_batch
        self.cache = Path(cache) if cache else default_cache()
        self.device = check(cudart().cudaGetDevice(), "cudaGetDevice")  # each new thread selects it
        self.gpu, self.capability = current_gpu()
        self.runtime = trt.Runtime(logger())  # kept: engines must not outlive their runtime
        self.built = {}  # graph -> seconds its engine took to build here; absent when cached
        self.keys = {g: engine_key(manifest.graphs[g].sha256, trt.__version__,
                                   self.capability, precision, max_batch) for g in manifest.graphs}
        self.engines = {g: self.load_engine(g) for g in manifest.graphs}
        self.outputs = {g: list(GRAPHS[g].outputs) for g in manifest.graphs}
        self.local = threading.local()  # per thread: stream and execution contexts

    # Engines.
    def engine_path(self, graph: str) -> Path:
        return self.cache / f"{graph}-{self.precision}-{self.keys[graph]}.engine"

    def load_engine(self, graph: str):
        """The cached engine of `graph` if it is valid, else a new one (then cached)."""
        path, key = self.engine_path(graph), self.keys[graph].encode()
        engine = None
        if path.is_file():
            # The file starts with its key: a renamed, truncated or foreign file is rebuilt.
            head, _, plan = path.read_bytes().partition(b"\n")
            engine = self.runtime.deserialize_cuda_engine(plan) if head == key else None
        if engine is None:
            t0 = time.perf_counter()
            timing = self.cache / f"timing-trt{self.trt.__version__}-sm{self.capability}.cache"
            plan = build_engine(self.graph_path(graph).read_bytes(), self.precision, self.max_batch,
                                timing)
            self.built[graph] = time.perf_counter() - t0
            write_atomic(path, key + b"\n" + plan)
            engine = self.runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise BackendError(f"{graph}: TensorRT cannot load the engine it just built")
        self.check_engine(engine, graph, path)
        return engine

    def check_engine(self, engine, graph: str, path: Path) -> None:
        """The engine's tensors must be the graph's, float32, with the bundle's sizes."""
        trt, spec = self.trt, GRAPHS[graph]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        bad = [n for n in names if engine.get_tensor_dtype(n) != trt.float32]
        if bad:
            raise BackendError(f"{path}: tensors {bad} are not float32")
        shapes = {n: [d if d >= 0 else None for d in engine.get_tensor_shape(n)] for n in names}
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]

        def ordered(names, want):  # check_interface compares in order; an engine's need not be the ONNX's
            return sorted(names, key=list(want).index) if set(names) == set(want) else names

        check_interface(path, graph, {n: shapes[n] for n in ordered(inputs, spec.inputs)},
                        {n: shapes[n] for n in ordered(outputs, spec.outputs)}, self.manifest.config)

    def state(self):
        """This thread's stream and execution contexts, made on first use."""
        s = self.local
        if not hasattr(s, "stream"):
            check(cudart().cudaSetDevice(self.device), "cudaSetDevice")  # a thread starts on device 0
            s.stream, s.contexts = Stream(), {}
        return s

    # Running.
    def run(self, graph: str, **inputs: DeviceArray) -> dict[str, DeviceArray]:
        n = next(iter(inputs.values())).shape[0]
        if n > self.max_batch:  # beyond the profile: in chunks, joined on the device
            chunks = [self.run(graph, **{k: v.rows(s, min(s + self.max_batch, n))
                                         for k, v in inputs.items()})
                      for s in range(0, n, self.max_batch)]
            return {name: self.concat([c[name] for c in chunks]) for name in self.outputs[graph]}
        s = self.state()
        if graph not in s.contexts:
            s.contexts[graph] = self.engines[graph].create_execution_context()
            if s.contexts[graph] is None:
                raise BackendError(f"{graph}: TensorRT could not create an execution context "
                                   "(out of GPU memory?)")
        context = s.contexts[graph]
        # TensorRT requires 256-byte aligned tensor addresses (NvInferRuntime.h, setTensorAddress).
        inputs = {k: v if v.aligned(256) else self.clone(v) for k, v in inputs.items()}
        for name, t in inputs.items():
            if not context.set_input_shape(name, t.shape):
                raise BackendError(f"{graph}: input {name!r} of shape {list(t.shape)} does not fit "
                                   f"the engine (batch 1..{self.max_batch})")
            context.set_tensor_address(name, t.ptr)
        outputs = {name: self.empty(tuple(context.get_tensor_shape(name)))
                   for name in self.outputs[graph]}
        for name, t in outputs.items():
            context.set_tensor_address(name, t.ptr)
        if not context.execute_async_v3(s.stream.handle):
            raise BackendError(f"{graph}: TensorRT failed to enqueue the graph")
        s.stream.sync()
        return outputs

    def describe(self) -> str:
        return (f"TensorRT {self.trt.__version__} on {self.gpu} (sm {self.capability}), "
                f"{self.precision}, batch 1..{self.max_batch} per engine call")

    # Tensors.
    def empty(self, shape: tuple[int, ...]) -> DeviceArray:
        owner = Allocation(4 * int(np.prod(shape)))
        return DeviceArray(owner.ptr, tuple(shape), owner)

    def copy(self, copies: list[tuple[int, int, int]], kind: str) -> None:
        """(dst, src, nbytes) copies in order on this thread's stream, then wait for them."""
        rt, s = cudart(), self.state()
        kind = getattr(rt.cudaMemcpyKind, kind)
        for dst, src, nbytes in copies:
            check(rt.cudaMemcpyAsync(dst, src, nbytes, kind, s.stream.stream), "cudaMemcpyAsync")
        s.stream.sync()

    def clone(self, t: DeviceArray) -> DeviceArray:
        out = self.empty(t.shape)
        self.copy([(out.ptr, t.ptr, t.nbytes)], "cudaMemcpyDeviceToDevice")
        return out

    def upload(self, a: np.ndarray) -> DeviceArray:
        a = np.ascontiguousarray(a, dtype=np.float32)
        t = self.empty(a.shape)
        self.copy([(t.ptr, a.ctypes.data, a.nbytes)], "cudaMemcpyHostToDevice")
        return t

    def download(self, t: DeviceArray) -> np.ndarray:
        a = np.empty(t.shape, np.float32)
        self.copy([(a.ctypes.data, t.ptr, t.nbytes)], "cudaMemcpyDeviceToHost")
        return a

    def split(self, t: DeviceArray, parts: int) -> list[DeviceArray]:
        return t.split(parts)

    def concat(self, tensors: list[DeviceArray]) -> DeviceArray:
        if len(tensors) == 1:
            return tensors[0]
        out = self.empty((sum(t.shape[0] for t in tensors), *tensors[0].shape[1:]))
        offsets = np.cumsum([0] + [t.nbytes for t in tensors])
        self.copy([(out.ptr + int(o), t.ptr, t.nbytes) for o, t in zip(offsets, tensors)],
                  "cudaMemcpyDeviceToDevice")
        return out

    def repeat(self, t: DeviceArray, n: int) -> DeviceArray:
        """np.repeat along the batch: each item n times in a row."""
        if n == 1:
            return t
        b, row = t.shape[0], t.nbytes // t.shape[0]
        out, copies = self.empty((b * n, *t.shape[1:])), []
        for i in range(b):  # item i, then doubling the copies already made: log2(n) copies
            base, done = out.ptr + i * n * row, 1
            copies.append((base, t.ptr + i * row, row))
            while done < n:
                k = min(done, n - done)
                copies.append((base + done * row, base, k * row))
                done += k
        self.copy(copies, "cudaMemcpyDeviceToDevice")  # in stream order: each sees those before
        return out

    def batch_size(self, t: DeviceArray) -> int:
        return t.shape[0]
