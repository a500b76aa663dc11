"""GPU backends. Without a GPU: engine cache keys, the fp16 graph conversion, the CUDA backend's
IOBinding code run on the CPU provider, and clear errors for missing backends. With one (markers
cuda, tensorrt; skipped otherwise): parity per graph with ONNX Runtime CPU, fp32 <= 1e-4 and
fp16 <= 1e-2 max abs difference, the engine cache, and threads."""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import eqsdk
from eqsdk.backends import unavailable_reason
from eqsdk.backends.fp16 import KEEP_FP32, to_fp16
from eqsdk.backends.ort_cpu import OrtCpuBackend
from eqsdk.backends.ort_cuda import OrtCudaBackend
from eqsdk.backends.tensorrt import engine_key
from eqsdk.errors import BackendError
from eqsdk.graphs import GRAPHS, IMAGE

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
NO_CUDA = unavailable_reason("cuda")
NO_TENSORRT = unavailable_reason("tensorrt")


@pytest.fixture(scope="module")
def cpu(tiny_bundle):
    return OrtCpuBackend(*tiny_bundle)


def graph_inputs(cpu: OrtCpuBackend, graph: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs like the renderer's: images in [0, 1], features from f_c, theta near the identity."""
    rng = np.random.default_rng(seed)
    s = cpu.manifest.image_size
    image = lambda: rng.random((batch, 3, s, s), dtype=np.float32)  # noqa: E731
    inputs = {k: image() if shape == IMAGE else cpu.run("f_c", x=image())["z"]
              for k, shape in GRAPHS[graph].inputs.items() if k not in ("theta", "origin")}
    if graph == "warp":
        identity = np.float32([[1, 0, 0], [0, 1, 0]])
        inputs["theta"] = identity + 0.1 * rng.standard_normal((batch, 2, 3), dtype=np.float32)
        inputs["origin"] = rng.uniform(-0.3, 0.3, (batch, 2)).astype(np.float32)
    return inputs


def max_diff_per_graph(cpu: OrtCpuBackend, backend, batches=(1, 5)) -> dict[str, float]:
    """Max abs difference backend vs ONNX Runtime CPU on the same inputs, per graph."""
    worst = {}
    for graph in GRAPHS:
        diffs = []
        for b in batches:
            inputs = graph_inputs(cpu, graph, b, seed=b)
            ref = cpu.run(graph, **inputs)
            got = backend.run(graph, **{k: backend.upload(v) for k, v in inputs.items()})
            for name, r in ref.items():
                g = backend.download(got[name])
                assert g.shape == r.shape
                diffs.append(float(np.abs(g - r).max()))
        worst[graph] = max(diffs)
    return worst


# Engine cache keys.
KEY = dict(onnx_sha256="ab" * 32, trt_version="10.7.0", compute_capability="8.9", precision="fp32",
           max_batch=64)


def test_engine_key_is_the_same_in_another_process_and_names_a_file():
    code = f"from eqsdk.backends.tensorrt import engine_key; print(engine_key(**{KEY!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == engine_key(**KEY)
    assert len(engine_key(**KEY)) == 24 and set(engine_key(**KEY)) <= set("0123456789abcdef")


@pytest.mark.parametrize("part, other", [("onnx_sha256", "cd" * 32), ("trt_version", "10.8.0"),
                                         ("trt_version", "11.0.0"), ("compute_capability", "9.0"),
                                         ("precision", "fp16"), ("max_batch", 32)])
def test_engine_key_changes_with_each_part(part, other):
    assert engine_key(**{**KEY, part: other}) != engine_key(**KEY)


# fp16 conversion (for TensorRT 11's strongly typed builds).
def fp16_pair(tiny_bundle, graph):
    directory, manifest = tiny_bundle
    model = onnx.load(directory / manifest.graphs[graph].file)
    return model, to_fp16(model)


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_fp16_graph_is_valid_and_keeps_a_float32_interface(tiny_bundle, graph):
    model, half = fp16_pair(tiny_bundle, graph)
    onnx.checker.check_model(half, full_check=True)
    def interface(m):
        return [(v.name, v.type.tensor_type.elem_type) for v in (*m.graph.input, *m.graph.output)]

    assert interface(half) == interface(model)
    assert {t for _, t in interface(half)} == {TensorProto.FLOAT}


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_fp16_graph_computes_in_fp16_outside_the_kept_ops(tiny_bundle, graph):
    _, half = fp16_pair(tiny_bundle, graph)
    readers = {}
    for node in half.graph.node:
        for x in node.input:
            readers.setdefault(x, set()).add(node.op_type)
    weights = [i for i in half.graph.initializer
               if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert any(i.data_type == TensorProto.FLOAT16 for i in weights)
    for i in weights:  # float32 weights only where float32 ops alone read them
        assert i.data_type == TensorProto.FLOAT16 or readers[i.name] <= set(KEEP_FP32), i.name
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    for node in half.graph.node:
        if node.op_type not in (*KEEP_FP32, "Cast"):
            assert all(types.get(y) != TensorProto.FLOAT for y in node.output), node.name


def test_fp16_graph_keeps_instance_normalization_in_float32(tiny_bundle):
    _, half = fp16_pair(tiny_bundle, "t_z")
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    types |= {i.name: i.data_type for i in half.graph.initializer}
    norms = [n for n in half.graph.node if n.op_type == "InstanceNormalization"]
    assert norms and all(types[x] == TensorProto.FLOAT for n in norms for x in (*n.input, *n.output))


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_fp16_graph_matches_fp32_on_onnxruntime(tiny_bundle, cpu, graph):
    # ONNX Runtime's CPU provider runs fp16 ops it has no fp16 kernel for in float32 between
    # casts, so this mainly checks the graph's structure and the rounding of its weights.
    import onnxruntime as ort

    _, half = fp16_pair(tiny_bundle, graph)
    session = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = graph_inputs(cpu, graph, 3, seed=7)
    for ref, got in zip(cpu.run(graph, **inputs).values(), session.run(None, inputs)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=TOLERANCE["fp16"], rtol=0)


def test_fp16_refuses_weights_beyond_fp16_range():
    w = numpy_helper.from_array(np.float32([[1e6]]), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w])
    with pytest.raises(ValueError, match="beyond fp16's range"):
        to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


# The CUDA backend's code (IOBinding, address views, host concat/repeat) on the CPU provider.
class OrtIoBindingOnCpu(OrtCudaBackend):
    device, alignment = "cpu", 4

    def providers(self) -> list:
        return ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def iobinding(tiny_bundle):
    return OrtIoBindingOnCpu(*tiny_bundle)


def test_iobinding_backend_matches_the_cpu_backend_per_graph(cpu, iobinding):
    assert max(max_diff_per_graph(cpu, iobinding).values()) <= 1e-6


def test_split_returns_views_into_the_same_memory(iobinding):
    a = np.arange(6 * 4 * 2, dtype=np.float32).reshape(6, 4, 2)
    t = iobinding.upload(a)
    parts = iobinding.split(t, 3)
    assert [p.owner for p in parts] == [t.owner] * 3
    assert [p.ptr - t.ptr for p in parts] == [0, 2 * 4 * 2 * 4, 2 * 2 * 4 * 2 * 4]
    for k, p in enumerate(parts):
        np.testing.assert_array_equal(iobinding.download(p), a[2 * k:2 * k + 2])
    with pytest.raises(ValueError, match="equal parts"):
        iobinding.split(t, 4)


def test_misaligned_views_run_after_a_copy(cpu, iobinding, monkeypatch):
    inputs = graph_inputs(cpu, "warp", 4, seed=1)
    monkeypatch.setattr(iobinding, "alignment", 1 << 40)  # no address is: every input is copied
    views = {k: iobinding.split(iobinding.upload(v), 2)[1] for k, v in inputs.items()}
    got = iobinding.download(iobinding.run("warp", **views)["z_moved"])
    ref = cpu.run("warp", **{k: v[2:] for k, v in inputs.items()})["z_moved"]
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)


def test_concat_and_repeat_match_numpy(iobinding):
    a, b = np.random.default_rng(0).random((2, 3, 5), dtype=np.float32), np.ones((1, 3, 5), np.float32)
    ta, tb = iobinding.upload(a), iobinding.upload(b)
    np.testing.assert_array_equal(iobinding.download(iobinding.concat([ta, tb, ta])),
                                  np.concatenate([a, b, a]))
    np.testing.assert_array_equal(iobinding.download(iobinding.repeat(tb, 4)), np.repeat(b, 4, axis=0))
    np.testing.assert_array_equal(iobinding.download(iobinding.repeat(iobinding.split(ta, 2)[1], 3)),
                                  np.repeat(a[1:], 3, axis=0))
    assert iobinding.batch_size(iobinding.repeat(tb, 4)) == 4


def renders(renderer, n=6, seed=3):
    rng = np.random.default_rng(seed)
    s = renderer.image_size
    x = [rng.random((n, 3, s, s), dtype=np.float32) for _ in range(4)]
    return renderer.render_arrays(*x)


def test_renderer_on_iobinding_backend_matches_cpu(tiny_bundle, cpu, iobinding):
    manifest = tiny_bundle[1]
    np.testing.assert_allclose(renders(eqsdk.Renderer(iobinding, manifest)),
                               renders(eqsdk.Renderer(cpu, manifest)), atol=1e-6, rtol=0)


def test_iobinding_backend_from_eight_threads_matches_sequential(tiny_bundle, iobinding):
    check_threads(eqsdk.Renderer(iobinding, tiny_bundle[1]))


def check_threads(renderer):
    seeds = range(16)
    sequential = [renders(renderer, 2, seed) for seed in seeds]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda seed: renders(renderer, 2, seed), seeds))
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(NO_CUDA is None, reason="the CUDA provider is available: ORT does not fall back")
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available")
def test_cuda_backend_refuses_onnxruntimes_silent_cpu_fallback(tiny_bundle):
    # Asked for a provider it lacks, ONNX Runtime warns and runs on the CPU; that must be an error.
    with pytest.raises(BackendError, match="fell back"):
        OrtCudaBackend(*tiny_bundle)


# Missing backends and names.
def test_gpu_backend_modules_import_nothing_heavy():
    code = ("import sys, eqsdk, eqsdk.backends.tensorrt, eqsdk.backends.ort_cuda; "
            "print(sorted({'torch', 'tensorrt', 'cuda', 'onnx'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(NO_TENSORRT is None, reason="TensorRT is available here")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_missing_tensorrt_is_a_backend_error_with_an_install_hint(tiny_bundle, precision):
    hint = r"'tensorrt' is not available: .*pip install 'eqsdk\[tensorrt\]'"
    with pytest.raises(BackendError, match=hint):
        eqsdk.load(tiny_bundle[0], backend="tensorrt", precision=precision)


@pytest.mark.skipif(NO_TENSORRT is None, reason="TensorRT is available here")
def test_to_tensorrt_without_tensorrt_exits_with_the_install_hint(tiny_bundle):
    from export.to_tensorrt import main

    with pytest.raises(SystemExit, match=r"pip install 'eqsdk\[tensorrt\]'"):
        main([str(tiny_bundle[0]), "--precision", "fp16"])


@pytest.mark.skipif(NO_CUDA is None, reason="the CUDA provider is available here")
def test_missing_cuda_provider_is_a_backend_error_with_an_install_hint(tiny_bundle):
    with pytest.raises(BackendError, match=r"'cuda' is not available: .*pip install 'eqsdk\[cuda\]'"):
        eqsdk.load(tiny_bundle[0], backend="cuda")


@pytest.mark.skipif(NO_CUDA is None or NO_TENSORRT is None or unavailable_reason("openvino") is None,
                    reason="a GPU backend or OpenVINO is available here")
def test_auto_resolves_to_cpu_without_other_backends(tiny_bundle):
    assert eqsdk.load(tiny_bundle[0], backend="auto").backend.name == "cpu"


def test_unknown_backend_name_is_a_clear_error(tiny_bundle):
    expected = "unknown backend 'gpu'; expected auto or one of cpu, cuda, tensorrt, openvino"
    with pytest.raises(BackendError, match=expected):
        eqsdk.load(tiny_bundle[0], backend="gpu")


# On a GPU.
@pytest.mark.cuda
@pytest.mark.skipif(NO_CUDA is not None, reason=f"CUDA provider: {NO_CUDA}")
def test_cuda_backend_matches_cpu_per_graph_and_from_threads(tiny_bundle, cpu):
    cuda = eqsdk.load(tiny_bundle[0], backend="cuda").backend
    assert cuda.sessions["g"].get_providers()[0] == "CUDAExecutionProvider"
    diffs = max_diff_per_graph(cpu, cuda)
    assert max(diffs.values()) <= TOLERANCE["fp32"], diffs
    np.testing.assert_allclose(renders(eqsdk.Renderer(cuda, tiny_bundle[1])),
                               renders(eqsdk.Renderer(cpu, tiny_bundle[1])),
                               atol=TOLERANCE["fp32"], rtol=0)
    check_threads(eqsdk.Renderer(cuda, tiny_bundle[1]))


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def tensorrt_backend(request, tiny_bundle, tmp_path_factory):
    """Engines with a batch profile of 1..8, so that batch 11 runs in chunks."""
    if NO_TENSORRT is not None:
        pytest.skip(f"TensorRT: {NO_TENSORRT}")
    from eqsdk.backends.tensorrt import TensorRTBackend

    cache = tmp_path_factory.mktemp(f"engines-{request.param}")
    return TensorRTBackend(*tiny_bundle, precision=request.param, max_batch=8, cache=cache)


@pytest.mark.tensorrt
def test_tensorrt_matches_cpu_per_graph(cpu, tensorrt_backend):
    diffs = max_diff_per_graph(cpu, tensorrt_backend, batches=(1, 5, 11))
    assert max(diffs.values()) <= TOLERANCE[tensorrt_backend.precision], diffs


@pytest.mark.tensorrt
def test_tensorrt_tensor_ops_match_numpy(tensorrt_backend):
    b = tensorrt_backend
    a = np.random.default_rng(0).random((6, 3, 5), dtype=np.float32)
    t = b.upload(a)
    parts = b.split(t, 3)
    assert [p.owner for p in parts] == [t.owner] * 3
    np.testing.assert_array_equal(b.download(parts[1]), a[2:4])
    np.testing.assert_array_equal(b.download(b.concat(parts[::-1])),
                                  np.concatenate([a[4:], a[2:4], a[:2]]))
    np.testing.assert_array_equal(b.download(b.repeat(parts[2], 5)), np.repeat(a[4:], 5, axis=0))


@pytest.mark.tensorrt
def test_tensorrt_from_eight_threads_matches_sequential(tiny_bundle, tensorrt_backend):
    check_threads(eqsdk.Renderer(tensorrt_backend, tiny_bundle[1]))


@pytest.mark.tensorrt
def test_tensorrt_engine_cache_is_reused_and_bad_files_are_rebuilt(tiny_bundle, tensorrt_backend):
    from eqsdk.backends.tensorrt import TensorRTBackend

    first = tensorrt_backend
    def again():
        return TensorRTBackend(*tiny_bundle, first.precision, first.max_batch, first.cache)

    assert again().built == {}
    first.engine_path("f_c").write_bytes(b"not an engine")  # corrupt
    plan = first.engine_path("g").read_bytes().partition(b"\n")[2]
    first.engine_path("g").write_bytes(b"0" * 24 + b"\n" + plan)  # someone else's key
    assert set(again().built) == {"f_c", "g"}
    assert again().built == {}
    assert list(first.cache.glob("timing-*.cache"))
