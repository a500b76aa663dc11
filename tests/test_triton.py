"""eqsdk.triton's model repository, checked without a Triton server: every config.pbtxt parsed with
Triton's own protobuf definitions (tritonclient's model_config_pb2) and compared with the ONNX
graphs as onnx reads them; the ensemble's wiring checked as a data-flow graph, and run step by step
with ONNX Runtime on the shipped example images against the library's render_arrays."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import eqsdk
from eqsdk.images import to_array
from eqsdk.triton import ENSEMBLE, QUEUE_DELAY_US, export_triton, triton_command

pytest.importorskip("tritonclient.grpc", reason='needs tritonclient: pip install "eqsdk[triton]"')
onnx = pytest.importorskip("onnx", reason='needs onnx: pip install "eqsdk[train]"')
from google.protobuf import text_format  # noqa: E402  (tritonclient's dependency)
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# ONNX element types -> Triton's DataType (model_config.proto), for the types a graph may use.
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.FLOAT16: mc.TYPE_FP16,
                  onnx.TensorProto.DOUBLE: mc.TYPE_FP64, onnx.TensorProto.INT64: mc.TYPE_INT64,
                  onnx.TensorProto.INT32: mc.TYPE_INT32, onnx.TensorProto.UINT8: mc.TYPE_UINT8}


def read_config(model_dir: Path) -> "mc.ModelConfig":
    """config.pbtxt as Triton parses it: unknown fields or malformed text raise ParseError."""
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def onnx_interface(path: Path) -> tuple[dict, dict]:
    """name -> (Triton data type, dims) of the graph's inputs and outputs, as onnx reads them."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {w.name for w in graph.initializer}

    def side(values):
        return {v.name: (ONNX_TO_TRITON[v.type.tensor_type.elem_type],
                         [d.dim_value if d.HasField("dim_value") else d.dim_param
                          for d in v.type.tensor_type.shape.dim]) for v in values if v.name not in weights}
    return side(graph.input), side(graph.output)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """Each bundled model's repository, exported once: name -> (repository, bundle directory)."""
    out = {}
    for name in eqsdk.MODELS:
        repo = tmp_path_factory.mktemp("triton") / name
        export_triton(name, repo)
        out[name] = repo, eqsdk.bundle.bundle_dir(name)
    return out


@pytest.mark.parametrize("name, graph", [(name, graph) for name in eqsdk.MODELS
                                         for graph in eqsdk.bundle.read_manifest(eqsdk.bundle.bundle_dir(name)).graphs])
def test_graph_config_matches_its_onnx_graph(repos, name, graph):
    repo, bundle = repos[name]
    config = read_config(repo / graph)
    assert config.name == graph and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == eqsdk.triton.MAX_BATCH_SIZE
    assert config.dynamic_batching.max_queue_delay_microseconds == QUEUE_DELAY_US
    model = repo / graph / "1" / "model.onnx"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == eqsdk.bundle.read_manifest(bundle).graphs[graph].sha256
    inputs, outputs = onnx_interface(model)
    for tensors, want in ((config.input, inputs), (config.output, outputs)):
        assert [t.name for t in tensors] == list(want)  # all of them, in the graph's order
        for t in tensors:
            data_type, dims = want[t.name]
            assert t.data_type == data_type
            assert isinstance(dims[0], str)  # the batch: dynamic in the graph, implicit in Triton
            assert list(t.dims) == dims[1:]


def test_dims_follow_the_bundles_config(tiny_bundle, tmp_path):
    """A tiny model's features are 16 channels: the dims are read, not assumed."""
    directory, manifest = tiny_bundle
    export_triton(directory, tmp_path / "repo", max_batch_size=4)
    config = read_config(tmp_path / "repo" / "t_z")
    assert config.max_batch_size == 4
    assert [list(t.dims) for t in config.input] == [[manifest.config["channels"], 16, 16]] * 3
    assert [list(t.dims) for t in config.output] == [[2, 3], [2], [manifest.config["channels"], 16, 16]]


@pytest.mark.parametrize("name", list(eqsdk.MODELS))
def test_ensemble_wiring_is_consistent(repos, name):
    repo = repos[name][0]
    ens = read_config(repo / ENSEMBLE)
    assert ens.platform == "ensemble" and (repo / ENSEMBLE / "1").is_dir()  # Triton wants the version
    assert [t.name for t in ens.input] == ["x_c", "x_b", "x_t1", "x_t2"]
    assert [t.name for t in ens.output] == ["image"]
    # Where each ensemble tensor comes from: an ensemble input, or exactly one step's output.
    produced = {t.name: (t.data_type, list(t.dims)) for t in ens.input}
    consumed = set()
    steps = list(ens.ensemble_scheduling.step)
    while steps:  # Triton runs a step once its inputs exist: the same order here
        ready = [s for s in steps if all(v in produced for v in s.input_map.values())]
        assert ready, f"steps {[s.model_name for s in steps]} wait on tensors no step produces"
        for step in ready:
            model = read_config(repo / step.model_name)  # the step's model is in the repository
            assert step.model_version == -1 and ens.max_batch_size <= model.max_batch_size
            assert set(step.input_map) == {t.name for t in model.input}  # every input fed
            assert set(step.output_map) <= {t.name for t in model.output}
            for t in model.input:
                assert produced[step.input_map[t.name]] == (t.data_type, list(t.dims)), (step.model_name, t.name)
                consumed.add(step.input_map[t.name])
            for t in model.output:
                if t.name in step.output_map:
                    assert step.output_map[t.name] not in produced, f"{step.output_map[t.name]} produced twice"
                    produced[step.output_map[t.name]] = (t.data_type, list(t.dims))
            steps.remove(step)
    for t in ens.output:
        assert produced[t.name] == (t.data_type, list(t.dims))
    assert set(produced) - consumed == {t.name for t in ens.output}  # nothing computed for nothing


def run_ensemble(repo: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ensemble as Triton runs it, without Triton: each step's model.onnx with ONNX Runtime,
    once its inputs exist, its outputs stored under their ensemble names."""
    import onnxruntime as ort

    ens = read_config(repo / ENSEMBLE)
    tensors = dict(feeds)
    steps = list(ens.ensemble_scheduling.step)
    while steps:
        step = next(s for s in steps if all(v in tensors for v in s.input_map.values()))
        session = ort.InferenceSession(str(repo / step.model_name / "1" / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        names = list(step.output_map)
        values = session.run(names, {k: tensors[v] for k, v in step.input_map.items()})
        tensors.update({step.output_map[k]: v for k, v in zip(names, values)})
        steps.remove(step)
    return {t.name: tensors[t.name] for t in ens.output}


def example_scenes(size: int) -> dict[str, np.ndarray]:
    """The shipped examples as ensemble inputs float32 (4, 3, S, S): three MNIST cases and the
    knight walking on its background."""
    cases = [EXAMPLES / f"case{k}" for k in (1, 2, 3)]
    walk, _ = eqsdk.read_clip(EXAMPLES / "sprites" / "walk_sequence.gif")
    sprites = EXAMPLES / "sprites"
    images = {"x_c": [c / "char.png" for c in cases] + [sprites / "knight.png"],
              "x_b": [c / "bg.png" for c in cases] + [sprites / "knight_bg.png"],
              "x_t1": [c / "anim_start.png" for c in cases] + [walk[0]],
              "x_t2": [c / "anim_end.png" for c in cases] + [walk[4]]}
    return {k: np.stack([to_array(x, size) for x in v]) for k, v in images.items()}


@pytest.mark.parametrize("name", list(eqsdk.MODELS))
def test_ensemble_renders_as_the_library(repos, name):
    r = eqsdk.load(name)
    x = example_scenes(r.image_size)
    want = r.render_arrays(x["x_c"], x["x_t1"], x["x_t2"], x["x_b"])
    got = run_ensemble(repos[name][0], x)["image"]
    assert got.shape == want.shape == (4, 3, r.image_size, r.image_size) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # A wiring that swapped two inputs would render something else.
    swapped = run_ensemble(repos[name][0], {**x, "x_t1": x["x_t2"], "x_t2": x["x_t1"]})["image"]
    assert np.abs(swapped - want).max() > 0.05


def test_an_existing_repository_is_replaced_only_with_force(tmp_path):
    repo = tmp_path / "repo"
    export_triton("mnist", repo, max_batch_size=8)
    with pytest.raises(eqsdk.InputError, match="not empty; pass --force"):
        export_triton("mnist", repo)
    assert read_config(repo / "g").max_batch_size == 8
    export_triton("mnist", repo, max_batch_size=16, force=True)
    assert read_config(repo / "g").max_batch_size == 16
    graphs = eqsdk.bundle.read_manifest(eqsdk.bundle.bundle_dir("mnist")).graphs
    assert sorted(p.name for p in repo.iterdir()) == sorted([*graphs, ENSEMBLE])
    assert sorted(os.listdir(tmp_path)) == ["repo"]  # no temporary folder left beside it


def test_an_empty_folder_is_filled(tmp_path):
    (tmp_path / "repo").mkdir()
    lines = triton_command("mnist", tmp_path / "repo")
    assert str(tmp_path / "repo") in lines[0]
    assert read_config(tmp_path / "repo" / ENSEMBLE).name == ENSEMBLE


def test_other_folders_and_files_are_never_replaced(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.jpg").write_bytes(b"x")
    with pytest.raises(eqsdk.InputError, match="not replacing it, even with --force"):
        export_triton("mnist", other, force=True)
    assert os.listdir(other) == ["keep.jpg"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(eqsdk.InputError, match="not a folder"):
        export_triton("mnist", tmp_path / "file", force=True)
    with pytest.raises(eqsdk.InputError, match="does not exist"):
        export_triton("mnist", tmp_path / "missing" / "repo")
    assert sorted(os.listdir(tmp_path)) == ["file", "photos"]


@pytest.mark.parametrize("size", [0, -1, 2.0, True, "8"])
def test_a_bad_batch_size_is_refused(tmp_path, size):
    with pytest.raises(eqsdk.InputError, match="max_batch_size: got .*; expected a positive integer"):
        export_triton("mnist", tmp_path / "repo", max_batch_size=size)
    assert not (tmp_path / "repo").exists()


def test_a_corrupt_bundle_writes_nothing(tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(eqsdk.bundle.bundle_dir("mnist"), bundle)
    with open(bundle / "g.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(eqsdk.BundleError, match="does not match the manifest"):
        export_triton(bundle, tmp_path / "repo")
    with pytest.raises(eqsdk.BundleError, match="unknown model"):
        export_triton("no-such-model", tmp_path / "repo")
    assert sorted(os.listdir(tmp_path)) == ["bundle"]


def test_exporting_needs_neither_torch_nor_tritonclient(tmp_path):
    """The runtime side: a repository is written with eqsdk's own dependencies."""
    import subprocess
    import sys

    code = ("import sys; from eqsdk.triton import export_triton; export_triton('mnist', sys.argv[1]); "
            "print(sorted({'torch', 'onnx', 'tritonclient', 'grpc'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "repo")], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]" and (tmp_path / "repo" / ENSEMBLE / "config.pbtxt").is_file()


def test_the_cli_writes_a_repository_and_refuses_to_replace_it(tmp_path, capsys):
    from eqsdk.cli import main

    out = tmp_path / "repo"
    assert main(["export-triton", "mnist", "--out", str(out), "--max-batch-size", "8"]) == 0
    assert (out / "render" / "config.pbtxt").is_file() and "max_batch_size: 8" in (out / "f_c" / "config.pbtxt").read_text()
    assert main(["export-triton", "mnist", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "--force" in err
