"""OpenVINO on the CPU: one compiled model per graph, through the `openvino` package's own API.

    backend = OpenVinoBackend(directory, manifest, precision="bf16", threads=2)

Precision is set explicitly with INFERENCE_PRECISION_HINT, never left to the plugin, whose default
on a CPU with bf16 instructions is bf16:
  fp32  f32 everywhere: the exact path, checked against ONNX Runtime CPU to 1e-4.
  bf16  convolutions, matmuls and most element-wise layers in bf16 (the plugin keeps some layers,
        GridSample among them, in f32); needs a CPU with bf16 instructions (AVX512_BF16 or AMX).
After compiling, what runs is read back from each compiled model (its INFERENCE_PRECISION_HINT and
the runtime precision of every layer of its execution graph): a bf16 request on a CPU without
bf16, or one the plugin compiled to f32 layers only, is a BackendError, never a silent f32 run.
describe() says how many layers run in bf16.

Paths: the full render, the drive path and, in a bundle with a motion reader, the reader's drive
path (eqsdk.graphs.PATHS) are also composed from the bundle's graphs into one model each when the
backend loads (compose_path), so a render is one call
and its intermediate tensors stay inside OpenVINO; the bundle keeps the separate graphs.

Threads: INFERENCE_NUM_THREADS per compiled model, one stream, latency hint, no pinning unless
asked (pinning=True; benchmarks/threads.py measures both). A batch of a path is also split over
streams: the first call with more than one image compiles the path once more with the throughput
hint (the plugin picks the streams: two of one thread on two cores) and runs an equal part of the
batch on each, at the same time. On two cores that rendered 13% more images a second at batch 2,
10% at batch 8 and 8% at batch 32; a single image is faster on one stream with every thread. Calls
from several threads are safe: each thread gets its own infer requests (a request runs one call
at a time); the compiled models are shared.
"""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np

from eqsdk.backends.base import Backend, check_interface
from eqsdk.backends.ort_cpu import default_threads
from eqsdk.errors import BackendError, BundleError
from eqsdk.graphs import GRAPHS, PATHS, resolve
from eqsdk.manifest import Manifest

# eqsdk's precision name -> OpenVINO's inference precision (an element type name).
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
# Layers of the execution graph that compute nothing: not counted when saying what runs in bf16.
NOT_COMPUTE = {"Input", "Output", "Const", "Parameter", "Result"}
# A path's batch is split over the plugin's streams when the parts are equal, or when it is large
# enough that unequal parts cost little: at batch 3 on two streams the part of 2 took 33% longer
# than the whole batch on one stream.
UNEVEN_SPLIT_BATCH = 8  # per stream


def unavailable_reason() -> str | None:
    """None if OpenVINO can run here, else why not (one line)."""
    try:
        import openvino as ov
    except ImportError as e:
        return f"openvino is not importable ({e})"
    if "CPU" not in ov.Core().available_devices:
        return "openvino has no CPU device here"
    return None


def has_bf16(core=None) -> bool:
    """Whether OpenVINO's CPU plugin has bf16 instructions to run (AVX512_BF16 or AMX)."""
    if core is None:
        import openvino as ov

        core = ov.Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def layer_precisions(compiled) -> Counter:
    """Compute layers of a compiled model's execution graph by runtime precision ("f32", "bf16")."""
    counts = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in NOT_COMPUTE or "runtimePrecision" not in info:
            continue
        counts[info["runtimePrecision"].astype(str)] += 1
    return counts


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, directory: Path, manifest: Manifest, threads: int | None = None,
                 precision: str = "fp32", pinning: bool = False):
        import openvino as ov

        super().__init__(directory, manifest)
        if precision not in PRECISIONS:
            raise BackendError(f"openvino precision {precision!r}; expected one of "
                               f"{', '.join(PRECISIONS)}")
        self.threads = threads or default_threads()
        core = ov.Core()
        self.device_name = core.get_property("CPU", "FULL_DEVICE_NAME")
        if precision == "bf16" and not has_bf16(core):
            raise BackendError(f"precision bf16: this CPU ({self.device_name}) has no bf16 "
                               "instructions (AVX512_BF16 or AMX); use precision='fp32'")
        # No pinning by default: threads pinned to cores that other processes also use cannot move
        # off them (ONNX Runtime does not pin either; benchmarks/threads.py measures both).
        self.pinning = bool(pinning)
        config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision],
                  "INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": self.pinning}
        self.compiled = {g: self._compile(core, g, config) for g in manifest.graphs}
        self.layers = sum((layer_precisions(c) for c in self.compiled.values()), Counter())
        self.paths = frozenset(p for p, spec in PATHS.items() if spec.runs_on(manifest.graphs))
        self.compiled.update({p: core.compile_model(self.compose_path(core, p), "CPU", config) for p in self.paths})
        self._check_precision(precision)
        self._core, self._split_config = core, {**config, "PERFORMANCE_HINT": "THROUGHPUT"}
        del self._split_config["NUM_STREAMS"]
        self._split = {}  # path -> (its model compiled for streams, their number, its output port)
        self._split_lock = threading.Lock()
        mixed = manifest.precision  # a quantised bundle: {"int8": [graphs], ...}
        self.precision = precision if isinstance(mixed, str) else \
            f"int8 ({', '.join(mixed['int8'])}), {precision} elsewhere"
        # Output ports in the order of GRAPHS' outputs.
        self._outputs = {g: [self._port(self.compiled[g].outputs, g, name) for name in GRAPHS[g].outputs]
                         for g in manifest.graphs}
        self._outputs.update({p: [self._port(self.compiled[p].outputs, p, "image")] for p in self.paths})
        self._local = threading.local()

    def _compile(self, core, graph: str, config: dict):
        """A compiled model whose interface is checked against GRAPHS and the bundle's config."""
        path = self.graph_path(graph)
        try:
            compiled = core.compile_model(str(path), "CPU", config)
        except Exception as e:  # openvino raises untyped RuntimeErrors for bad files
            raise BundleError(f"{path}: not a loadable ONNX graph ({str(e).splitlines()[0]})") from None
        shape = lambda port: [d.get_length() if d.is_static else None  # noqa: E731
                              for d in port.get_partial_shape()]
        check_interface(path, graph, {p.get_any_name(): shape(p) for p in compiled.inputs},
                        {p.get_any_name(): shape(p) for p in compiled.outputs}, self.manifest.config)
        return compiled

    def compose_path(self, core, path: str):
        """One ov.Model of a path: the bundle's graphs read again, each graph's parameters fed
        from the path's inputs or the graph before it (outputs no one reads, t_z's theta and
        origin, are left out of the model)."""
        import openvino as ov
        import openvino.opset13 as ops

        def graph(name: str, **feeds) -> dict:
            model = core.read_model(str(self.graph_path(name)))
            for parameter in model.get_parameters():
                for target in parameter.output(0).get_target_inputs():
                    target.replace_source_output(feeds[parameter.get_friendly_name()])
            return {r.input_value(0).get_any_name(): r.input_value(0) for r in model.get_results()}

        shapes = {k: [-1 if d == "B" else d for d in resolve(v, self.manifest.config)]
                  for k, v in PATHS[path].inputs.items()}
        params = {k: ops.parameter(shape, ov.Type.f32, name=k) for k, shape in shapes.items()}
        x = {k: p.output(0) for k, p in params.items()}
        for k, port in x.items():
            port.set_names({k})
        if path == "render":  # f_c once on the three images, as Renderer.render_arrays
            z = graph("f_c", x=ops.concat([x["x_c"], x["x_t1"], x["x_t2"]], 0).output(0))["z"]
            z_c, z_t1, z_t2 = ops.split(z, 0, 3).outputs()
            z_b = graph("f_b", x=x["x_b"])["z"]
        elif path == "drive":  # as Renderer.drive with a cached reference frame
            z_c, z_b, z_t1 = x["z_c"], x["z_b"], x["z_t1"]
            z_t2 = graph("f_c", x=x["x_t2"])["z"]
        if path == "drive_reader":  # as Renderer.drive with the motion reader
            z_c, z_b = x["z_c"], x["z_b"]
            motion = graph("reader", x_t1=x["x_t1"], x_t2=x["x_t2"])
            z_moved = graph("warp", theta=motion["theta"], origin=motion["origin"], z_c=z_c)["z_moved"]
        else:
            z_moved = graph("t_z", z_t1=z_t1, z_t2=z_t2, z_c=z_c)["z_moved"]
        image = ops.result(graph("g", z_char=z_moved, z_bg=z_b)["image"])
        image.output(0).set_names({"image"})
        return ov.Model([image], list(params.values()), f"{self.manifest.name}_{path}")

    def _check_precision(self, precision: str) -> None:
        """What the plugin compiled is what was asked: a mismatch is an error, not a fallback."""
        want = PRECISIONS[precision]
        for graph, compiled in self.compiled.items():
            self._check_hint(graph, compiled, want)
        other = sum(n for p, n in self.layers.items() if p not in ("f32", want) and p.startswith(("f", "bf")))
        if other:
            raise BackendError(f"openvino runs {other} layers in a float type other than f32 and "
                               f"{want}: {dict(self.layers)}")
        if precision == "bf16" and not self.layers["bf16"]:
            raise BackendError(f"precision bf16: openvino compiled every layer in f32 on this CPU "
                               f"({self.device_name}); use precision='fp32'")

    @staticmethod
    def _check_hint(model: str, compiled, want: str) -> None:
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != want:
            raise BackendError(f"openvino compiled {model!r} with inference precision {got}, "
                               f"not the {want} asked for")

    def split_streams(self, path: str) -> int:
        """How many streams a large batch of `path` is split over (1: not split); compiles the
        path for them on first use."""
        with self._split_lock:
            if path not in self._split:
                compiled = self._core.compile_model(self.compose_path(self._core, path), "CPU", self._split_config)
                self._check_hint(path, compiled, self._split_config["INFERENCE_PRECISION_HINT"])
                self._split[path] = (compiled, int(compiled.get_property("NUM_STREAMS")),
                                     self._port(compiled.outputs, path, "image"))
            return self._split[path][1]

    @staticmethod
    def _port(ports, graph: str, name: str):
        matches = [p for p in ports if name in p.get_names()]
        if len(matches) != 1:
            raise BundleError(f"graph {graph!r}: openvino finds {len(matches)} outputs named {name!r}")
        return matches[0]

    def _requests(self) -> dict:
        """This thread's infer request per graph."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {g: c.create_infer_request()
                                               for g, c in self.compiled.items()}
        return requests

    def run(self, graph: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(GRAPHS[graph].outputs, self._infer(graph, inputs)))

    def run_path(self, path: str, **inputs: np.ndarray) -> np.ndarray:
        n = len(next(iter(inputs.values())))
        streams = self.split_streams(path) if n > 1 else 1
        if streams == 1 or (n % streams and n < UNEVEN_SPLIT_BATCH * streams):
            return self._infer(path, inputs)[0]
        return self._infer_split(path, inputs)

    def _infer_split(self, path: str, inputs: dict) -> np.ndarray:
        """A path's batch in parts, one per stream, run at the same time -> the image batch."""
        compiled, streams, port = self._split[path]
        requests = getattr(self._local, "split", None)
        if requests is None:
            requests = self._local.split = {}
        if path not in requests:
            requests[path] = [compiled.create_infer_request() for _ in range(streams)]
        n = len(next(iter(inputs.values())))
        bounds = np.linspace(0, n, streams + 1).round().astype(int)
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        for request, a, b in zip(requests[path], bounds[:-1], bounds[1:]):
            request.start_async({k: v[a:b] for k, v in arrays.items()}, share_inputs=True)
        for request in requests[path]:
            request.wait()
        return np.concatenate([request.get_tensor(port).data for request in requests[path]])

    def _infer(self, model: str, inputs: dict) -> list[np.ndarray]:
        """One compiled model (a graph or a path) on its inputs -> its outputs, copied out."""
        request = self._requests()[model]
        # start_async + wait, not infer(): on 2 busy cores a full render at batch 1 took 33 ms
        # through infer() and 7 ms this way (fp32; bf16 6.6 and 2.4 ms). share_inputs: no copy of
        # contiguous float32 arrays; outputs are copied out of the request's buffers, which its
        # next call overwrites. `arrays` holds the inputs until the request is done with them.
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        request.start_async(arrays, share_inputs=True)
        request.wait()
        return [request.get_tensor(port).data.copy() for port in self._outputs[model]]

    def describe(self) -> str:
        import openvino as ov

        compute = sum(self.layers.values())
        ran = ", ".join(f"{n} {p}" for p, n in self.layers.most_common())
        return (f"OpenVINO {ov.get_version().split('-')[0]} CPU ({self.device_name}), {self.threads} "
                f"threads, {self.precision} ({compute} layers run: {ran}); paths in one call: "
                f"{', '.join(sorted(self.paths))}; batches split over the plugin's streams")
