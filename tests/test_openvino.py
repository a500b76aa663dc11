"""The OpenVINO backend against ONNX Runtime CPU: parity per graph (fp32 <= 1e-4 on the tiny model
and the bundled ones), the full render, bf16 within its tolerance and really running in bf16, what
describe() says, threads, and clear errors."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import eqsdk
from eqsdk.backends import AUTO_ORDER, INSTALL_HINTS, available
from eqsdk.backends.ort_cpu import OrtCpuBackend
from eqsdk.errors import BackendError
from eqsdk.graphs import GRAPHS
from eqsdk.verify import TOLERANCE, compare

ov = pytest.importorskip("openvino")
HAS_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 instructions")


@pytest.fixture(scope="module")
def cpu(tiny_bundle):
    return OrtCpuBackend(*tiny_bundle)


@pytest.fixture(scope="module")
def fp32(tiny_bundle):
    return eqsdk.load(tiny_bundle[0], backend="openvino", precision="fp32").backend


@pytest.fixture(scope="module")
def bf16(tiny_bundle):
    if not HAS_BF16:
        pytest.skip("this CPU has no bf16 instructions")
    return eqsdk.load(tiny_bundle[0], backend="openvino", precision="bf16").backend


def renders(backend, manifest, n=5, seed=3):
    rng = np.random.default_rng(seed)
    s = manifest.image_size
    return eqsdk.Renderer(backend, manifest).render_arrays(
        *[rng.random((n, 3, s, s), dtype=np.float32) for _ in range(4)])


def test_fp32_matches_onnxruntime_per_graph(tiny_bundle, cpu, fp32):
    diffs = compare(cpu, fp32, tiny_bundle[1].config, batches=(1, 5))
    assert set(diffs) == set(GRAPHS) and max(diffs.values()) <= TOLERANCE["fp32"], diffs


@pytest.mark.parametrize("model", ["mnist", "sprites"])
def test_fp32_matches_onnxruntime_per_graph_on_a_bundled_model(model):
    reference = eqsdk.load(model).backend
    candidate = eqsdk.load(model, backend="openvino", precision="fp32").backend
    diffs = compare(reference, candidate, reference.manifest.config)
    assert max(diffs.values()) <= TOLERANCE["fp32"], diffs


def test_fp32_full_render_matches_onnxruntime(tiny_bundle, cpu, fp32):
    want, got = renders(cpu, tiny_bundle[1]), renders(fp32, tiny_bundle[1])
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=TOLERANCE["fp32"], rtol=0)


def test_render_and_drive_run_as_one_call_and_equal_the_chained_graphs(tiny_bundle, cpu, fp32):
    manifest, rng = tiny_bundle[1], np.random.default_rng(5)
    s = manifest.image_size
    x_c, x_t1, x_t2, x_b = (rng.random((3, 3, s, s), dtype=np.float32) for _ in range(4))
    assert fp32.paths == {"render", "drive", "drive_reader"}
    assert "paths in one call: drive, drive_reader, render" in fp32.describe()
    calls = []
    fp32.run_path, run_path = (lambda p, **kw: calls.append(p) or run_path(p, **kw)), fp32.run_path
    try:
        fused, chained = eqsdk.Renderer(fp32, manifest), eqsdk.Renderer(cpu, manifest)
        assert np.abs(fused.render_arrays(x_c, x_t1, x_t2, x_b)
                      - chained.render_arrays(x_c, x_t1, x_t2, x_b)).max() <= TOLERANCE["fp32"]
        enc = [(r.encode_character(list(x_c.transpose(0, 2, 3, 1))), r.encode_background(list(x_b.transpose(0, 2, 3, 1))),
                r.encode_character(list(x_t1.transpose(0, 2, 3, 1)))) for r in (fused, chained)]
        got, want = (r.drive(*e, x_t2) for r, e in zip((fused, chained), enc))
        assert np.abs(got - want).max() <= TOLERANCE["fp32"]
        fused, chained = eqsdk.Renderer(fp32, manifest, reader=True), eqsdk.Renderer(cpu, manifest, reader=True)
        got, want = (r.drive(*e[:2], x_t1[:1], x_t2) for r, e in zip((fused, chained), enc))
        assert np.abs(got - want).max() <= TOLERANCE["fp32"]
    finally:
        del fp32.run_path
    assert calls == ["render", "drive", "drive_reader"]


def test_a_batch_split_over_streams_equals_one_call(tiny_bundle):
    # Two threads make two streams of one thread each (the throughput hint), whatever the cores.
    backend = eqsdk.load(tiny_bundle[0], backend="openvino", precision="fp32", threads=2).backend
    assert backend.split_streams("render") == 2
    s, rng = tiny_bundle[1].image_size, np.random.default_rng(7)
    split, infer_split = [], backend._infer_split
    backend._infer_split = lambda path, inputs: split.append(len(inputs["x_c"])) or infer_split(path, inputs)
    for n in (1, 3, 4, 17):  # 3: unequal parts of a small batch are slower than one call
        x = {k: rng.random((n, 3, s, s), dtype=np.float32) for k in ("x_c", "x_t1", "x_t2", "x_b")}
        got, want = backend.run_path("render", **x), backend._infer("render", x)[0]
        assert got.shape == (n, 3, s, s)
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    assert split == [4, 17]


def test_outputs_are_the_callers_own(tiny_bundle, fp32):
    # The next call must not overwrite what an earlier one returned (the request's buffers).
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    first = fp32.run("f_c", x=x)["z"]
    kept = first.copy()
    fp32.run("f_c", x=1 - x)
    np.testing.assert_array_equal(first, kept)


def test_inputs_that_need_a_copy_give_the_same_outputs(fp32):
    # float64 and strided inputs are converted before the asynchronous run reads them.
    x = np.random.default_rng(1).random((4, 3, 64, 64), dtype=np.float32)
    want = fp32.run("f_c", x=x[::2].copy())["z"]
    np.testing.assert_array_equal(fp32.run("f_c", x=x[::2])["z"], want)
    np.testing.assert_array_equal(fp32.run("f_c", x=x[::2].astype(np.float64))["z"], want)


def test_fp32_runs_every_layer_in_f32_and_says_so(fp32):
    assert fp32.precision == "fp32" and fp32.name == "openvino"
    assert set(fp32.layers) == {"f32"}
    for compiled in fp32.compiled.values():
        assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    line = fp32.describe()
    assert line.startswith(f"OpenVINO {ov.get_version().split('-')[0]} CPU (")
    assert f", {fp32.threads} threads, fp32 (" in line and " f32)" in line and "bf16" not in line


@needs_bf16
def test_bf16_runs_in_bf16_within_its_tolerance(tiny_bundle, cpu, bf16):
    assert bf16.precision == "bf16" and bf16.layers["bf16"] > 0
    for compiled in bf16.compiled.values():
        assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    assert f", bf16 ({sum(bf16.layers.values())} layers run: " in bf16.describe()
    assert f"{bf16.layers['bf16']} bf16" in bf16.describe()
    diffs = compare(cpu, bf16, tiny_bundle[1].config, batches=(1, 5))
    assert max(diffs.values()) <= TOLERANCE["bf16"], diffs
    # bf16 really rounds: a run that matched fp32 to float noise would be f32 under another name.
    assert max(diffs.values()) > 10 * TOLERANCE["fp32"], diffs
    np.testing.assert_allclose(renders(bf16, tiny_bundle[1]), renders(cpu, tiny_bundle[1]),
                               atol=TOLERANCE["bf16"], rtol=0)


@needs_bf16
def test_bf16_on_a_bundled_model_is_within_its_tolerance():
    reference = eqsdk.load("mnist").backend
    candidate = eqsdk.load("mnist", backend="openvino", precision="bf16").backend
    diffs = compare(reference, candidate, reference.manifest.config)
    assert max(diffs.values()) <= TOLERANCE["bf16"], diffs


@pytest.mark.skipif(HAS_BF16, reason="this CPU has bf16 instructions")
def test_bf16_on_a_cpu_without_it_is_refused(tiny_bundle):
    with pytest.raises(BackendError, match="no bf16 instructions.*precision='fp32'"):
        eqsdk.load(tiny_bundle[0], backend="openvino", precision="bf16")


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_are_set_on_every_compiled_model(tiny_bundle, threads):
    backend = eqsdk.load(tiny_bundle[0], backend="openvino", threads=threads).backend
    assert backend.threads == threads and f", {threads} threads, " in backend.describe()
    assert {c.get_property("INFERENCE_NUM_THREADS") for c in backend.compiled.values()} == {threads}
    assert not any(c.get_property("ENABLE_CPU_PINNING") for c in backend.compiled.values())


def test_one_model_from_eight_threads_matches_sequential(tiny_bundle, fp32):
    seeds = range(12)
    sequential = [renders(fp32, tiny_bundle[1], 2, seed) for seed in seeds]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda seed: renders(fp32, tiny_bundle[1], 2, seed), seeds))
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a, b)


def test_available_and_chosen_by_auto_before_the_cpu(tiny_bundle):
    assert available()["openvino"] is None
    assert AUTO_ORDER.index("openvino") == AUTO_ORDER.index("cpu") - 1
    assert INSTALL_HINTS["openvino"] == "pip install 'eqsdk[openvino]'"
    if available()["cuda"] is not None and available()["tensorrt"] is not None:
        assert eqsdk.load(tiny_bundle[0], backend="auto").backend.name == "openvino"


def test_the_default_precision_is_bf16_where_the_cpu_has_it_and_fp32_stays_one_option_away(tiny_bundle):
    assert eqsdk.load(tiny_bundle[0], backend="openvino").backend.precision == ("bf16" if HAS_BF16 else "fp32")
    assert eqsdk.load(tiny_bundle[0], backend="openvino", precision="fp32").backend.precision == "fp32"
    assert eqsdk.load(tiny_bundle[0]).backend.precision == "fp32"  # the cpu backend: always exact


@needs_bf16
def test_auto_with_bf16_picks_openvino(tiny_bundle):
    backend = eqsdk.load(tiny_bundle[0], backend="auto", precision="bf16").backend
    assert backend.name == "openvino" and backend.precision == "bf16"


@pytest.mark.parametrize("backend, precision, message", [
    ("openvino", "int4", r"precision 'int4'; expected auto or one of bf16, fp16, fp32"),
    ("openvino", "fp16", r"precision fp16 runs on the tensorrt backend only, not 'openvino'"),
    ("cpu", "bf16", r"precision bf16 runs on the openvino backend only, not 'cpu'"),
])
def test_a_precision_the_backend_cannot_run_is_a_backend_error(tiny_bundle, backend, precision, message):
    with pytest.raises(BackendError, match=message):
        eqsdk.load(tiny_bundle[0], backend=backend, precision=precision)


def test_the_backend_class_refuses_other_precisions_itself(tiny_bundle):
    from eqsdk.backends.openvino import OpenVinoBackend

    with pytest.raises(BackendError, match=r"openvino precision 'fp16'; expected one of fp32, bf16"):
        OpenVinoBackend(*tiny_bundle, precision="fp16")


def test_a_broken_graph_is_a_bundle_error_naming_the_file(tiny_bundle, tmp_path):
    import shutil

    from eqsdk.backends.openvino import OpenVinoBackend

    directory, manifest = tiny_bundle
    copy = tmp_path / "tiny"
    shutil.copytree(directory, copy)
    (copy / manifest.graphs["g"].file).write_bytes(b"not onnx")
    with pytest.raises(eqsdk.BundleError, match=r"g\.onnx: not a loadable ONNX graph"):
        OpenVinoBackend(copy, manifest)


def test_verify_compares_openvino_at_each_precision(tiny_bundle, capsys):
    from eqsdk.cli import main

    assert main(["verify", "--model", str(tiny_bundle[0])]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("openvino  fp32 ") and line.endswith("ok (tolerance 0.0001)")
               for line in out.splitlines()), out
    bf16 = "ok (tolerance 0.2)" if HAS_BF16 else "not run: precision bf16: this CPU"
    assert any(line.startswith("openvino  bf16 ") and bf16 in line for line in out.splitlines()), out


def test_the_cli_renders_at_the_precision_asked_for_and_says_which(tmp_path, capsys):
    from pathlib import Path

    from eqsdk.cli import main

    case = Path(__file__).resolve().parents[1] / "examples" / "case1"
    images = ["--char", str(case / "char.png"), "--bg", str(case / "bg.png"),
              "--anim", str(case / "anim_start.png"), str(case / "anim_end.png")]
    assert main(["render", *images, "-o", str(tmp_path / "a.png"), "--backend", "openvino", "--precision", "fp32"]) == 0
    assert "backend openvino fp32)" in capsys.readouterr().err
    assert main(["render", *images, "-o", str(tmp_path / "b.png"), "--backend", "openvino"]) == 0
    assert f"backend openvino {'bf16' if HAS_BF16 else 'fp32'})" in capsys.readouterr().err
    assert main(["render", *images, "-o", str(tmp_path / "c.png"), "--precision", "bf16"]) == 2
    assert "precision bf16 runs on the openvino backend only, not 'cpu'" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()
