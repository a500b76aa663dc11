"""The runtime: light import, bundle checks, image inputs, rendering with real onnxruntime."""
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eqsdk
from eqsdk.bundle import MANIFEST
from eqsdk.images import ResizeWarning, save_image, to_array


def test_import_eqsdk_does_not_import_torch():
    code = "import sys, eqsdk; eqsdk.load; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_render_returns_uint8_at_model_size(tiny_bundle):
    r = eqsdk.load(tiny_bundle[0])
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    out = r.render(char=imgs[0], bg=imgs[1], anim=(imgs[2], imgs[3]))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    char, bg, start, end = (to_array(i, 64)[None] for i in imgs)
    batch = r.render_arrays(char, start, end, bg)
    np.testing.assert_array_equal(out, eqsdk.images.to_uint8(batch[0]))


def test_render_rejects_a_wrong_number_of_anim_frames(tiny_bundle):
    r = eqsdk.load(tiny_bundle[0])
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(eqsdk.InputError, match="expected 2 images"):
        r.render(char=img, bg=img, anim=(img,))


@pytest.fixture
def copied_bundle(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle[0], tmp_path / "b")


def test_tampered_graph_is_named(copied_bundle):
    path = copied_bundle / "g.onnx"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(eqsdk.BundleError, match=r"g\.onnx.*sha256"):
        eqsdk.load(copied_bundle)


def test_missing_graph_and_manifest_are_named(copied_bundle):
    (copied_bundle / "f_b.onnx").unlink()
    with pytest.raises(eqsdk.BundleError, match=r"f_b\.onnx.*missing"):
        eqsdk.load(copied_bundle)
    (copied_bundle / MANIFEST).unlink()
    with pytest.raises(eqsdk.BundleError, match="manifest.json: missing"):
        eqsdk.load(copied_bundle)


@pytest.mark.parametrize("version, message", [(2, "older eqsdk.*re-export it"), (99, "newer eqsdk")])
def test_other_schema_versions_say_what_to_do(copied_bundle, version, message):
    manifest = json.loads((copied_bundle / MANIFEST).read_text())
    manifest["schema_version"] = version
    (copied_bundle / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(eqsdk.BundleError, match=f"manifest.json: key 'schema_version': {version}: .*{message}"):
        eqsdk.load(copied_bundle)


def test_unknown_model_lists_the_bundled_ones():
    with pytest.raises(eqsdk.BundleError, match="expected one of mnist"):
        eqsdk.load("no-such-model")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA"])
def test_image_modes_are_converted(mode, tmp_path):
    im = Image.new("RGB", (64, 64), (200, 30, 60)).convert(mode)
    path = tmp_path / "x.png"
    im.save(path)
    for src in (path, str(path), im):
        x = to_array(src, 64)
        assert x.shape == (3, 64, 64) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1


def test_transparent_pixels_become_white():
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    np.testing.assert_array_equal(to_array(im, 64), 1.0)


def test_other_sizes_are_resized_with_a_warning():
    with pytest.warns(ResizeWarning, match="resized from 100x50 to 64x64"):
        x = to_array(np.zeros((50, 100, 3), np.uint8), 64)
    assert x.shape == (3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_array(np.zeros((64, 64, 3), np.uint8), 64)  # no warning at the model's size


@pytest.mark.parametrize("bad, message", [
    (np.zeros((64, 64, 2), np.uint8), "shape"),
    (np.zeros((64, 64, 3), np.int64), "dtype int64"),
    (np.full((64, 64, 3), 2.0), r"\[0, 1\]"),
    ([[0, 1]], "got list"),
])
def test_bad_arrays_say_what_was_received(bad, message):
    with pytest.raises(eqsdk.InputError, match=message):
        to_array(bad, 64, "char")


def test_bad_files_are_input_errors(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(eqsdk.InputError, match="not an image"):
        to_array(tmp_path / "text.png", 64)
    with pytest.raises(eqsdk.InputError, match="no such file"):
        to_array(tmp_path / "missing.png", 64)
    with pytest.raises(eqsdk.InputError, match="is a directory"):
        to_array(tmp_path, 64)


def test_save_image_never_overwrites_by_surprise(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    path = save_image(img, tmp_path / "o.png")
    before = path.read_bytes()
    with pytest.raises(eqsdk.InputError, match="exists"):
        save_image(img + 1, path)
    assert path.read_bytes() == before
    save_image(img + 1, path, overwrite=True, scale=3)
    assert Image.open(path).size == (24, 24)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]  # no temporary left behind


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(8)]


def test_compose_of_cached_encodings_equals_render(tiny_bundle, scene):
    r = eqsdk.load(tiny_bundle[0])
    char, bg, start, end = scene[:4]
    character, background = r.encode_character(char), r.encode_background(bg)
    motion = r.encode_motion(start, end)
    composed = r.compose(character, motion, background)
    assert composed.shape == (64, 64, 3)
    rendered = r.render(char=char, bg=bg, anim=(start, end))
    assert np.abs(composed.astype(int) - rendered).max() <= 1  # warp alone vs t_z's fused apply


def test_compose_broadcasts_batches(tiny_bundle, scene):
    r = eqsdk.load(tiny_bundle[0])
    characters = r.encode_character(scene[:3])
    motion = r.encode_motion(scene[3], scene[4])
    backgrounds = r.encode_background(scene[5:8])
    out = r.compose(characters, motion, backgrounds)
    assert out.shape == (3, 64, 64, 3)
    for k in range(3):
        one = r.compose(r.encode_character(scene[k]), motion, r.encode_background(scene[5 + k]))
        np.testing.assert_array_equal(out[k], one)
    with pytest.raises(eqsdk.InputError, match="expected N or 1 each"):
        r.compose(characters, motion, r.encode_background(scene[:2]))
    with pytest.raises(eqsdk.InputError, match="expected a character encoding"):
        r.compose(backgrounds, motion, backgrounds)


def test_different_motions_read_differently(tiny_bundle, scene):
    r = eqsdk.load(tiny_bundle[0])
    (still, origin), (moved, _) = r.encode_motion(scene[3], scene[3]).data, r.encode_motion(scene[3], scene[4]).data
    assert still.shape == moved.shape == (1, 2, 3) and origin.shape == (1, 2)
    assert np.abs(still - moved).max() > 1e-3


def test_the_bundled_identity_motion_keeps_the_character():
    r = eqsdk.load("mnist")
    case = Path(__file__).resolve().parents[1] / "examples" / "case1"
    frame, char, bg = (str(case / f) for f in ("anim_start.png", "char.png", "bg.png"))
    theta, _ = r.encode_motion(frame, frame).data
    np.testing.assert_allclose(theta[0], [[1, 0, 0], [0, 1, 0]], atol=0.01)
    identity = eqsdk.renderer.Encoding("motion", (np.float32([[[1, 0, 0], [0, 1, 0]]]), np.zeros((1, 2), np.float32)), 1, True)
    unmoved = r.compose(r.encode_character(char), identity, r.encode_background(bg))
    still = r.render(char=char, bg=bg, anim=(frame, frame))
    diff = np.abs(still.astype(int) - unmoved)  # out of 255: T^Z's reading is within 0.01 of it
    assert diff.mean() < 0.5 and diff.max() <= 16


def test_one_model_from_eight_threads_matches_sequential(tiny_bundle):
    from concurrent.futures import ThreadPoolExecutor

    r = eqsdk.load(tiny_bundle[0])
    rng = np.random.default_rng(2)
    jobs = [[rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)] for _ in range(32)]
    render = lambda job: r.render(char=job[0], bg=job[1], anim=(job[2], job[3]))  # noqa: E731
    sequential = [render(job) for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(render, jobs))
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a, b)


def test_warmup_and_load_times_are_measured(tiny_bundle):
    r = eqsdk.load(tiny_bundle[0])
    assert r.load_seconds > 0 and r.warmup() > 0


def test_unknown_or_unavailable_backend_is_a_clear_error(tiny_bundle):
    with pytest.raises(eqsdk.BackendError, match="unknown backend 'gpu'"):
        eqsdk.load(tiny_bundle[0], backend="gpu")
    assert eqsdk.load(tiny_bundle[0], backend="auto").backend.name in ("cpu", "cuda", "tensorrt",
                                                                       "openvino")


def test_saved_images_get_the_usual_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = save_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "x.png")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left


def test_a_uint8_array_at_the_model_size_is_read_as_its_pil_image_is():
    a = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fast, through_pil = to_array(a, 64), to_array(Image.fromarray(a), 64)
    assert fast.dtype == np.float32 and fast.shape == (3, 64, 64) and np.array_equal(fast, through_pil)
    with pytest.warns(ResizeWarning):  # any other size still goes through PIL and says so
        assert to_array(a, 32).shape == (3, 32, 32)
