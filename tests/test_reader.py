"""The motion reader: distilled (train.distill), added to a bundle (export.add_reader), and driving
frames through the reader, the warp and g (Renderer reader=True, `eqsdk animate --reader`)."""
import json
import shutil

import numpy as np
import pytest
import torch

import eqsdk
from eqsdk.cli import main
from eqsdk.renderer import Encoding
from eqsdk.verify import TOLERANCE
from export.add_reader import add_reader
from export.to_onnx import export_bundle
from tests.conftest import TINY, tiny_reader
from train.checkpoint import load_checkpoint
from train.distill import DistillConfig, distill, reader_render
from train.evaluate_reader import load_reader
from train.model import MotionReader, ReaderConfig
from train.train import Budget


@pytest.fixture(scope="module")
def no_reader(tiny_checkpoint, tmp_path_factory):
    """The tiny model's bundle as export writes it: without a reader."""
    out = tmp_path_factory.mktemp("plain") / "plain"
    export_bundle(tiny_checkpoint, out, "plain")
    return out


def frames(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)


def test_reader_exports_with_a_dynamic_batch_and_moves(tiny_bundle, tiny_checkpoint):
    out, manifest = tiny_bundle
    assert manifest.parity["reader"] <= TOLERANCE["fp32"]
    backend = eqsdk.load(out).backend
    for n in (1, 6):
        m = backend.run("reader", x_t1=frames(n, 64, 1), x_t2=frames(n, 64, 2))
        assert m["theta"].shape == (n, 2, 3) and m["origin"].shape == (n, 2)
        assert np.abs(m["theta"] - [[1, 0, 0], [0, 1, 0]]).max() > 0.01  # not the identity


def test_drive_with_the_reader_renders_what_pytorch_renders(tiny_bundle, tiny_checkpoint):
    out, _ = tiny_bundle
    model, _ = load_checkpoint(tiny_checkpoint)
    reader = load_reader(out.parent / "reader.pt", model)
    x_c, x_t1, x_t2, x_b = (frames(3, 64, seed) for seed in range(4))
    want = reader_render(model, reader, *(torch.from_numpy(x) for x in (x_c, x_t1, x_t2, x_b))).numpy()
    r = eqsdk.load(out, reader=True)
    b = r.backend
    character = Encoding("character", b.run("f_c", x=x_c)["z"], 3, False)
    background = Encoding("background", b.run("f_b", x=x_b)["z"], 3, False)
    np.testing.assert_allclose(r.drive(character, background, x_t1, x_t2), want, atol=TOLERANCE["fp32"], rtol=0)
    # one reference frame for every driving frame, as animate gives it
    got = r.drive(character, background, x_t1[:1], x_t2)
    want = reader_render(model, reader, *(torch.from_numpy(x) for x in (x_c, x_t1[[0, 0, 0]], x_t2, x_b))).numpy()
    np.testing.assert_allclose(got, want, atol=TOLERANCE["fp32"], rtol=0)


def test_animate_with_the_reader_runs_neither_f_c_nor_t_z_per_frame(tiny_bundle):
    r = eqsdk.load(tiny_bundle[0], reader=True)
    clip = list(frames(5, 64, 3).transpose(0, 2, 3, 1))
    calls, run = [], r.backend.run
    r.backend.run = lambda graph, **kw: calls.append(graph) or run(graph, **kw)
    try:
        out = r.animate(clip[0], clip[1], clip, batch=2)
    finally:
        del r.backend.run
    assert len(out) == 5 and out[0].shape == (64, 64, 3) and out[0].dtype == np.uint8
    assert calls == ["f_c", "f_b"] + ["reader", "warp", "g"] * 3  # char and bg once, then batches of 2, 2, 1


def test_a_bundle_without_a_reader_loads_and_says_so_when_asked_for_one(no_reader):
    r = eqsdk.load(no_reader)
    assert "reader" not in r.manifest.graphs and r.render_arrays(*frames(4, 64, 0)[:, None]).shape == (1, 3, 64, 64)
    with pytest.raises(eqsdk.BundleError, match="'plain' has no motion reader"):
        eqsdk.load(no_reader, reader=True)
    with pytest.raises(eqsdk.BundleError, match="no motion reader"):
        eqsdk.load(no_reader, backend="openvino", precision="fp32", reader=True)


def test_reader_and_check_motion_are_one_or_the_other(tiny_bundle):
    with pytest.raises(eqsdk.InputError, match="check_motion=True"):
        eqsdk.load(tiny_bundle[0], reader=True, check_motion=True)


def test_add_reader_refuses_a_reader_of_another_bundle(no_reader, tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(no_reader, bundle)
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    ckpt = tmp_path / "r.pt"
    manifest = eqsdk.bundle.read_manifest(tiny_bundle[0])
    tiny_reader(TINY, manifest, ckpt)
    other = torch.load(ckpt, weights_only=True)
    other["bundle"]["sha256"]["t_z"] = "0" * 64
    torch.save(other, ckpt)
    with pytest.raises(eqsdk.BundleError, match="distilled from another f_c or T\\^Z"):
        add_reader(bundle, ckpt)
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before  # untouched


def test_cli_animate_with_the_reader(tiny_bundle, no_reader, tmp_path, capsys):
    clip = tmp_path / "clip"
    clip.mkdir()
    from PIL import Image
    for k, f in enumerate(frames(4, 64, 5).transpose(0, 2, 3, 1)):
        Image.fromarray((f * 255).astype(np.uint8)).save(clip / f"{k:02}.png")
    char = clip / "00.png"
    out = tmp_path / "out.gif"
    assert main(["animate", "--model", str(tiny_bundle[0]), "--char", str(char), "--drive", str(clip),
                 "--reader", "-o", str(out)]) == 0
    assert Image.open(out).n_frames == 4
    capsys.readouterr()
    assert main(["animate", "--model", str(no_reader), "--char", str(char), "--drive", str(clip),
                 "--reader", "-o", str(tmp_path / "no.gif")]) == 2
    assert "no motion reader" in capsys.readouterr().err and not (tmp_path / "no.gif").exists()
    assert main(["animate", "--model", str(tiny_bundle[0]), "--char", str(char), "--drive", str(clip),
                 "--reader", "--check-motion", "-o", str(tmp_path / "both.gif")]) == 2


@pytest.mark.data("mnist")
def test_distill_trains_resumes_and_its_reader_is_added(no_reader, tmp_path):
    bundle, out = tmp_path / "b", tmp_path / "run"
    shutil.copytree(no_reader, bundle)
    dcfg, rcfg = DistillConfig(batch=8), ReaderConfig(width=8, keypoints=4, hidden=16)
    first = distill(bundle, out, Budget(steps=2), dcfg=dcfg, rcfg=rcfg, validate_every=0)
    steps = torch.load(out / "reader.pt", weights_only=True)["state"]["step"]
    assert steps == 2 and set(first) == {"rms", "rms_motion", "rms_origin"}
    distill(bundle, out, Budget(steps=3), dcfg=dcfg, rcfg=rcfg, validate_every=0)  # resumed, not restarted
    assert torch.load(out / "reader.pt", weights_only=True)["state"]["step"] == 3
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] > steps and "val" in rows[-1]
    add_reader(bundle, out / "reader.pt")
    manifest = eqsdk.bundle.read_manifest(bundle)
    assert manifest.evaluation["reader"]["steps"] == rows[-1]["step"]
    assert isinstance(load_reader(out / "reader.pt", load_checkpoint_of(bundle)), MotionReader)


def load_checkpoint_of(bundle):
    from export.from_bundle import from_bundle

    return from_bundle(bundle)[0]


def test_the_mnist_recipe_has_a_reader_table_and_a_recipe_without_one_is_refused(tmp_path):
    from train.distill import read_recipe
    from train.recipe import REPO, RecipeError

    budget, dcfg, rcfg = read_recipe(REPO / "recipes" / "mnist.toml")
    assert budget.steps > 1000 and budget.minutes is None and dcfg == DistillConfig() and rcfg == ReaderConfig()
    bare = tmp_path / "bare.toml"
    bare.write_text("[[stage]]\nsteps = 10\n")
    with pytest.raises(RecipeError, match="no reader recipe"):
        read_recipe(bare)
    bare.write_text("[reader]\nsteps = 10\nwidht = 8\n")
    with pytest.raises(RecipeError, match="widht"):
        read_recipe(bare)


def test_info_states_the_readers_figures_from_its_record():
    from eqsdk.cli import evaluation_lines

    record = {"evaluation": {"ratios": {"transformation_vs_video_frames": {"t_z": 0.6, "reader": 0.65}},
                             "reconstruction": {"t_z": 0.002, "reader": 0.0025}}}
    assert evaluation_lines({"ratios": {"tz_r2": 0.9}, "reader": record}) == [
        "tz_r2 = 0.900", "with --reader: transformation_vs_video_frames = 0.650, reconstruction MSE +25% over T^Z's"]
    assert evaluation_lines({"reader": {"evaluation": None}}) == evaluation_lines({"reader": 3}) == []


def test_a_swapped_reader_fails_the_golden_render(tmp_path):
    import json as json_

    from eqsdk.verify import check_golden
    from export.to_onnx import export_graph, sha256
    from train.model import ModelConfig

    bundle = tmp_path / "swapped"
    shutil.copytree(eqsdk.bundle.bundle_dir("mnist"), bundle)
    manifest = eqsdk.bundle.read_manifest(bundle)
    assert "drive_reader" in manifest.golden.renders
    assert check_golden(eqsdk.load(bundle))["drive_reader"] <= manifest.golden.tolerance
    cfg = ModelConfig.from_dict(dict(manifest.config))
    other = MotionReader(cfg, ReaderConfig.from_dict(dict(manifest.evaluation["reader"]["reader_config"]))).eval()
    with torch.no_grad():  # another model's reader: here, one that reads every motion as a small turn
        other.head[-1].bias.copy_(torch.tensor([0.98, -0.2, 0, 0.2, 0.98, 0, 0, 0]))
    export_graph(other, "reader", cfg, bundle / "reader.onnx")
    m = json_.loads((bundle / "manifest.json").read_text())
    m["graphs"]["reader"]["sha256"] = sha256(bundle / "reader.onnx")  # a consistent, wrong bundle
    (bundle / "manifest.json").write_text(json_.dumps(m))
    with pytest.raises(eqsdk.BundleError, match="golden drive_reader differs"):
        check_golden(eqsdk.load(bundle))
