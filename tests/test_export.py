"""Export: four ONNX graphs at opset 18 with dynamic batch, parity with PyTorch, the manifest."""
import json

import numpy as np
import onnx
import pytest
import torch

import eqsdk
from eqsdk.bundle import MANIFEST, bundle_dir
from eqsdk.graphs import GRAPHS
from export.to_onnx import OPSET, TOLERANCE, check_parity, example_inputs, graph_modules, sha256
from train.checkpoint import load_checkpoint


def test_parity_recorded_in_manifest_is_within_tolerance(tiny_bundle):
    _, manifest = tiny_bundle
    parity = manifest.parity
    assert set(parity) == set(GRAPHS) | {"render"}
    assert max(parity.values()) <= TOLERANCE


@pytest.mark.parametrize("name", list(GRAPHS))
def test_graph_matches_pytorch_at_other_batch_sizes(tiny_bundle, tiny_checkpoint, name):
    from train.evaluate_reader import load_reader

    out, _ = tiny_bundle
    model, _ = load_checkpoint(tiny_checkpoint)
    modules = {**graph_modules(model), "reader": load_reader(out.parent / "reader.pt", model)}
    backend = eqsdk.load(out).backend
    for batch in (1, 7):
        inputs = example_inputs(name, model.cfg, batch, seed=10 + batch)
        with torch.no_grad():
            ref = modules[name](*inputs.values())
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = backend.run(name, **{k: v.numpy() for k, v in inputs.items()})
        for r, key in zip(ref, GRAPHS[name].outputs):
            assert got[key].shape == tuple(r.shape)
            np.testing.assert_allclose(got[key], r.numpy(), atol=TOLERANCE, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("symmetric", [False, True])
def test_rigid_tz_exports_with_parity(tmp_path, symmetric):
    from dataclasses import replace

    from export.to_onnx import export_bundle
    from train.model import SceneModel
    from tests.conftest import TINY

    torch.manual_seed(1)
    cfg = replace(TINY, tz_rigid=True, tz_symmetric=symmetric)
    model = SceneModel(cfg)
    torch.nn.init.normal_(model.t_z.head[-1].weight, std=0.05)  # T^Z moves
    ckpt = tmp_path / "rigid.pt"
    torch.save({"model": model.state_dict(), "model_config": cfg.to_dict(), "step": 0, "samples": 0,
                "elapsed": 0.0, "train_config": {}, "command": "tests"}, ckpt)
    manifest = export_bundle(ckpt, tmp_path / "bundle", "rigid")
    assert max(manifest.parity.values()) <= TOLERANCE


def test_tz_moves_features_so_parity_is_not_trivial(tiny_bundle, tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint)
    inputs = example_inputs("t_z", model.cfg, 4)
    theta = eqsdk.load(tiny_bundle[0]).backend.run("t_z", **{k: v.numpy() for k, v in inputs.items()})["theta"]
    assert np.abs(theta - [[1, 0, 0], [0, 1, 0]]).max() > 0.05


def test_graphs_are_opset_18_with_gridsample_and_no_affinegrid(tiny_bundle):
    out, manifest = tiny_bundle
    for name, spec in GRAPHS.items():
        graph = onnx.load(out / spec.file)
        assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
        ops = {n.op_type for n in graph.graph.node}
        assert "AffineGrid" not in ops
        assert ("GridSample" in ops) == (name in ("t_z", "warp"))
        assert [i.name for i in graph.graph.input] == list(spec.inputs)
        assert [o.name for o in graph.graph.output] == list(spec.outputs)


def test_manifest_describes_the_bundle(tiny_bundle):
    out, _ = tiny_bundle
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["opset"] == OPSET and manifest["config"]["channels"] == 16
    for name, entry in manifest["graphs"].items():
        assert entry["sha256"] == sha256(out / entry["file"])
    assert manifest["graphs"]["t_z"]["inputs"]["z_c"] == ["B", 16, 16, 16]
    assert manifest["graphs"]["g"]["outputs"]["image"] == ["B", 3, 64, 64]


def test_export_refuses_to_replace_a_bundle_without_force(tiny_bundle, tiny_checkpoint):
    from eqsdk.errors import InputError
    from export.to_onnx import export_bundle

    with pytest.raises(InputError, match="--force"):
        export_bundle(tiny_checkpoint, tiny_bundle[0], "tiny")


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path):
    from export.to_onnx import main

    with pytest.raises(SystemExit, match=r"^error: .*nope.pt: no such checkpoint file$"):
        main([str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b")])
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_export_records_the_recipe_and_golden_renders(tiny_checkpoint, tmp_path):
    from export.to_onnx import export_bundle

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    path = tmp_path / "with-recipe.pt"
    first = {"path": "runs/tiny/stage1/last.pt", "command": None, "recipe": "recipes/tiny.toml",
             "stage": 1, "step": 5, "samples": 320, "minutes": 0.1, "init_from": None}
    torch.save({**ckpt, "recipe": "recipes/tiny.toml", "stage": 2, "init_from": first}, path)
    manifest = export_bundle(path, tmp_path / "b", "tiny")
    assert manifest.training.recipe == "recipes/tiny.toml"
    assert [(s.stage, s.step) for s in manifest.training.stages()] == [(2, 0), (1, 5)]
    assert set(manifest.golden.renders) == {"render", "compose"}
    from eqsdk.verify import check_golden

    assert check_golden(eqsdk.load(tmp_path / "b"))["render"] <= manifest.golden.tolerance


def test_parity_check_detects_a_different_model(tiny_bundle):
    from train.model import SceneModel
    from tests.conftest import TINY

    torch.manual_seed(123)
    other = SceneModel(TINY).eval()
    assert max(check_parity(other, tiny_bundle[0]).values()) > TOLERANCE


def test_a_bundle_converts_back_to_the_checkpoint_it_was_exported_from(tiny_bundle, tiny_checkpoint):
    from export.from_bundle import from_bundle

    model, manifest = from_bundle(tiny_bundle[0])
    want = torch.load(tiny_checkpoint, weights_only=True)["model"]
    got = model.state_dict()
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)


@pytest.mark.slow
def test_the_bundled_model_converts_to_a_checkpoint_that_trains_on(tmp_path):
    from export.from_bundle import main

    out = tmp_path / "mnist.pt"
    main([str(bundle_dir("mnist")), "--out", str(out)])
    model, ckpt = load_checkpoint(out)
    assert ckpt["command"].startswith("python -m train.train") and ckpt["model_config"]["tz_rigid"]
    with pytest.raises(SystemExit, match="exists"):  # never overwritten
        main([str(bundle_dir("mnist")), "--out", str(out)])


@pytest.mark.parametrize("name", list(GRAPHS))
def test_exported_graphs_carry_no_node_metadata(tiny_bundle, name):
    graph = onnx.load(tiny_bundle[0] / GRAPHS[name].file).graph
    assert not [n.name for n in graph.node if n.metadata_props]
