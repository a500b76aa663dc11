"""Bundles: every malformed manifest or graph file is a BundleError naming the file and the key;
the golden render recorded at export catches a graph swapped for another model's."""
import hashlib
import json
import os
import shutil

import pytest

import eqsdk
from eqsdk.bundle import MANIFEST, bundle_dir
from eqsdk.cli import main
from eqsdk.manifest import read_manifest


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle[0], tmp_path / "b")


def edit(bundle, change) -> None:
    """Apply `change` to the bundle's manifest JSON: it returns the new JSON, or None after
    changing it in place."""
    path = bundle / MANIFEST
    data = json.loads(path.read_text())
    new = change(data)
    path.write_text(json.dumps(data if new is None else new))


def in_place(change):
    return lambda m: (change(m), None)[1]


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


# (change to the manifest's JSON, what the message must say): each a way a manifest is malformed.
MALFORMED = {
    "a list": (lambda m: [m], r"manifest.json: a list; expected an object"),
    "no name": (lambda m: without(m, "name"), r"key 'name': missing"),
    "name a number": (lambda m: {**m, "name": 3}, r"key 'name': a number 3; expected a string"),
    "opset a string": (lambda m: {**m, "opset": "18"}, r"key 'opset': a string \"18\"; expected an integer"),
    "no config": (lambda m: without(m, "config"), r"key 'config': missing"),
    "image_size true": (lambda m: {**m, "config": {**m["config"], "image_size": True}},
                        r"key 'config.image_size': a boolean true; expected an integer"),
    "image_size negative": (lambda m: {**m, "config": {**m["config"], "image_size": -64}},
                            r"key 'config.image_size': -64; expected a positive integer"),
    "graphs a list": (lambda m: {**m, "graphs": list(m["graphs"])}, r"key 'graphs': a list \[.*; expected an object"),
    "a graph missing": (lambda m: {**m, "graphs": without(m["graphs"], "warp")}, r"key 'graphs.warp': missing"),
    "an extra graph": (lambda m: {**m, "graphs": {**m["graphs"], "h": m["graphs"]["g"]}},
                       r"key 'graphs': unknown key 'h'"),
    "sha256 missing": (in_place(lambda m: m["graphs"]["g"].pop("sha256")), r"key 'graphs.g.sha256': missing"),
    "sha256 not hex": (lambda m: m["graphs"]["g"].update(sha256="xyz"),
                       r"key 'graphs.g.sha256': \"xyz\"; expected 64 lowercase hex digits"),
    "file a number": (lambda m: m["graphs"]["g"].update(file=7), r"key 'graphs.g.file': a number 7; expected a string"),
    "absolute file": (lambda m: m["graphs"]["g"].update(file="/etc/passwd"),
                      r"key 'graphs.g.file': '/etc/passwd'; expected a file name inside the bundle directory"),
    "file up and out": (lambda m: m["graphs"]["g"].update(file="../b/g.onnx"),
                        r"key 'graphs.g.file': '../b/g.onnx'; expected a file name inside"),
    "wrong interface": (lambda m: m["graphs"]["g"]["inputs"].update(z_char=["B", 3, 64, 64]),
                        r"key 'graphs.g.inputs': .*expected .* for the graph 'g'"),
    "unknown key": (lambda m: {**m, "motion_check": True}, r"unknown key 'motion_check'.*re-export"),
    "golden renders cut": (in_place(lambda m: m["golden"]["renders"]["render"].pop()),
                           r"key 'golden.renders.render': thumbnails of shape \(1, 3, 8, 8\); expected \(2, 3, 8, 8\)"),
    "golden tolerance nan": (lambda m: m["golden"].update(tolerance=float("nan")),
                             r"key 'golden.tolerance': a number nan; expected a finite number"),
    "training steps a string": (lambda m: m["training"].update(step="0"),
                                r"key 'training.step': a string \"0\"; expected an integer"),
    "evaluation a list": (lambda m: {**m, "evaluation": []}, r"key 'evaluation': a list \[\]; expected an object"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_manifest_is_a_bundle_error_naming_file_and_key(bundle, kind, capsys):
    change, message = MALFORMED[kind]
    edit(bundle, change)
    with pytest.raises(eqsdk.BundleError, match=message) as e:
        eqsdk.load(bundle)
    assert str(bundle / MANIFEST) in str(e.value)
    assert main(["info", "--model", str(bundle)]) == 2  # the CLI: one line, exit 2
    err = capsys.readouterr().err
    assert err.startswith("eqsdk: error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not a readable JSON manifest"),
    (b"\xff\xfe{}", "not a readable JSON manifest"),
    (b"[" * 100000, "not a readable JSON manifest"),  # nesting past the parser's recursion
    (b"", "not a readable JSON manifest"),
])
def test_unreadable_manifest_is_a_bundle_error(bundle, content, message):
    (bundle / MANIFEST).write_bytes(content)
    with pytest.raises(eqsdk.BundleError, match=f"manifest.json: {message}"):
        eqsdk.load(bundle)


def test_a_huge_manifest_is_refused_unread(bundle):
    (bundle / MANIFEST).write_bytes(b" " * (5 << 20))
    with pytest.raises(eqsdk.BundleError, match=r"manifest.json: 5,242,880 bytes; expected a manifest of at most"):
        eqsdk.load(bundle)


def test_a_manifest_that_is_a_directory(bundle):
    (bundle / MANIFEST).unlink()
    (bundle / MANIFEST).mkdir()
    with pytest.raises(eqsdk.BundleError, match="manifest.json: not a file"):
        eqsdk.load(bundle)


def test_a_graph_that_is_a_directory(bundle):
    (bundle / "g.onnx").unlink()
    (bundle / "g.onnx").mkdir()
    with pytest.raises(eqsdk.BundleError, match=r"g\.onnx: not a file; expected the ONNX graph 'g'"):
        eqsdk.load(bundle)


def test_a_symlink_leading_out_of_the_bundle(bundle, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle / "g.onnx", outside)
    os.symlink(outside, bundle / "g.onnx")
    with pytest.raises(eqsdk.BundleError, match=r"key 'graphs.g.file': 'g.onnx' leads out of the bundle"):
        eqsdk.load(bundle)


def test_a_symlink_inside_the_bundle_is_fine(bundle):
    shutil.move(bundle / "g.onnx", bundle / "decoder.onnx")
    os.symlink("decoder.onnx", bundle / "g.onnx")
    assert eqsdk.load(bundle).name == "tiny"


def set_graph(bundle, graph: str, data: bytes) -> None:
    """Replace a graph file and update its sha256 in the manifest, as a careful forger would."""
    (bundle / f"{graph}.onnx").write_bytes(data)
    edit(bundle, lambda m: m["graphs"][graph].update(sha256=hashlib.sha256(data).hexdigest()))


def test_bytes_that_are_not_onnx_with_their_sha256_recorded(bundle):
    set_graph(bundle, "f_b", b"not an onnx graph")
    with pytest.raises(eqsdk.BundleError, match=r"f_b\.onnx: not a loadable ONNX graph"):
        eqsdk.load(bundle)


def test_a_graph_of_another_interface_with_its_sha256_recorded(bundle):
    set_graph(bundle, "f_b", (bundle / "g.onnx").read_bytes())
    with pytest.raises(eqsdk.BundleError, match=r"f_b\.onnx: graph inputs \['z_char', 'z_bg'\], expected \['x'\]"):
        eqsdk.load(bundle)


@pytest.mark.parametrize("graph", ["f_c", "f_b", "t_z", "g"])
def test_verify_catches_a_graph_swapped_for_another_models_of_the_same_interface(graph, tmp_path, capsys):
    # sprites and sprites-bg share every interface; only their weights differ.
    bundle = shutil.copytree(bundle_dir("sprites"), tmp_path / "sprites")
    set_graph(bundle, graph, (bundle_dir("sprites-bg") / f"{graph}.onnx").read_bytes())
    eqsdk.load(bundle)  # its sha256 and interfaces pass ...
    assert main(["verify", "--model", str(bundle)]) == 2  # ... its golden render does not
    err = capsys.readouterr().err
    assert "golden" in err and "is not the model that was exported" in err
    assert main(["info", "--model", str(bundle)]) == 2


def test_verify_and_info_say_what_they_checked(capsys):
    assert main(["verify", "--model", "sprites"]) == 0
    out = capsys.readouterr().out
    assert "checked sha256 of every graph file (f_c.onnx, f_b.onnx, t_z.onnx, g.onnx, warp.onnx, reader.onnx)" in out
    assert "checked interfaces" in out
    assert "checked golden render: 2 fixed scenes through render, compose, drive_reader" in out
    assert main(["info", "--model", "sprites", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert max(info["golden_max_abs_diff"].values()) <= info["manifest"]["golden"]["tolerance"]


def test_a_bundle_without_golden_renders_says_so(bundle, capsys):
    edit(bundle, lambda m: m.update(golden=None))
    assert main(["info", "--model", str(bundle)]) == 0
    assert "golden render: none recorded in this bundle" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(eqsdk.MODELS))
def test_shipped_bundles_parse_and_round_trip(name):
    manifest = read_manifest(bundle_dir(name))
    assert manifest.golden is not None and manifest.training is not None
    assert json.loads((bundle_dir(name) / MANIFEST).read_text()) == manifest.to_json()
