"""`eqsdk verify` and `eqsdk info`: a bundle checked end to end.

The golden render: export renders fixed inputs (golden_inputs) and records thumbnails of the
renders in the manifest; check_golden renders them again on ONNX Runtime CPU and compares, so a
graph swapped for another model's graph of the same interface is caught even when its sha256 was
updated in the manifest. compare runs another backend against ONNX Runtime CPU on the same inputs.
"""
from __future__ import annotations

import math

import numpy as np

from eqsdk.errors import BundleError
from eqsdk.graphs import GRAPHS, IMAGE, resolve

# Max abs difference per graph output: another backend vs ONNX Runtime CPU, and at export ONNX
# Runtime vs PyTorch (fp32). bf16 keeps 8 bits of mantissa to fp16's 11: on OpenVINO the bundled
# models' graphs differ by up to 0.086 (g's image and T^Z's features; 5 seeds, batches 1, 4, 16),
# so 0.2 leaves a margin of 2x and still catches a wrong graph, which differs by O(1).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 0.2}
GOLDEN_SEED, GOLDEN_BATCH, GOLDEN_POOL = 0, 2, 8
# Max abs difference on the thumbnails: above the float noise of other CPUs and ONNX Runtime
# versions (~1e-6), below what another model's graph changes.
GOLDEN_TOLERANCE = TOLERANCE["fp32"]
# The four-graph render; a given motion through warp and g; and where the bundle has a motion
# reader, a drive with it (reader, warp, g).
GOLDEN_PATHS = ("render", "compose", "drive_reader")


def golden_inputs(seed: int, batch: int, size: int) -> dict[str, np.ndarray]:
    """Fixed scenes from raw PCG64 bits, which numpy keeps stable across versions: images x_c,
    x_t1, x_t2, x_b float32 (batch, 3, size, size) in [0, 1), blocks of 8x8 pixels so that they
    hold shapes rather than pixel noise, and a motion (theta (batch, 2, 3), origin (batch, 2))."""
    cells = size // 8
    bits = np.random.PCG64(seed).random_raw(4 * batch * 3 * cells * cells + 3 * batch)
    u = (bits >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)  # uniform in [0, 1)
    images = u[:4 * batch * 3 * cells * cells].reshape(4, batch, 3, cells, cells)
    images = images.repeat(8, axis=3).repeat(8, axis=4)
    angle, dx, dy = (u[-3 * batch:].reshape(3, batch) - 0.5) * np.float32([[1.2], [0.4], [0.4]])
    c, s = np.cos(angle), np.sin(angle)
    theta = np.stack([np.stack([c, -s, dx], -1), np.stack([s, c, dy], -1)], 1).astype(np.float32)
    x_c, x_t1, x_t2, x_b = images
    return {"x_c": x_c, "x_t1": x_t1, "x_t2": x_t2, "x_b": x_b, "theta": theta,
            "origin": np.zeros((batch, 2), np.float32)}


def thumbnails(images: np.ndarray, pool: int) -> np.ndarray:
    """(B, 3, S, S) -> (B, 3, S / pool, S / pool): the mean of each pool x pool block."""
    b, c, s, _ = images.shape
    return images.reshape(b, c, s // pool, pool, s // pool, pool).mean(axis=(3, 5), dtype=np.float64)


def golden_renders(renderer, seed: int = GOLDEN_SEED, batch: int = GOLDEN_BATCH,
                   pool: int = GOLDEN_POOL) -> dict[str, np.ndarray]:
    """Thumbnails of each of GOLDEN_PATHS the bundle has on golden_inputs, rendered as the
    renderer renders (always the four-graph render: the motion check is a runtime option, not the
    model)."""
    from eqsdk.renderer import Encoding, Renderer

    renderer = Renderer(renderer.backend, renderer.manifest)  # check_motion off
    x, b = golden_inputs(seed, batch, renderer.image_size), renderer.backend
    render = renderer.render_arrays(x["x_c"], x["x_t1"], x["x_t2"], x["x_b"])
    character = Encoding("character", b.run("f_c", x=b.upload(x["x_c"]))["z"], batch, False)
    background = Encoding("background", b.run("f_b", x=b.upload(x["x_b"]))["z"], batch, False)
    motion = Encoding("motion", (x["theta"], x["origin"]), batch, False)
    compose = renderer.compose_arrays(character, motion, background, batch)
    out = {"render": thumbnails(render, pool), "compose": thumbnails(compose, pool)}
    if "reader" in renderer.manifest.graphs:
        drive = Renderer(b, renderer.manifest, reader=True).drive(character, background, x["x_t1"], x["x_t2"])
        out["drive_reader"] = thumbnails(drive, pool)
    return out


def check_golden(renderer) -> dict[str, float] | None:
    """Max abs difference per path between the renders of the golden inputs and the thumbnails
    the manifest records (None when it records none); a BundleError when one is past the
    recorded tolerance."""
    golden = renderer.manifest.golden
    if golden is None:
        return None
    got = golden_renders(renderer, golden.seed, golden.batch, golden.pool)
    diffs = {}
    for path, want in golden.renders.items():
        if path not in got:
            raise BundleError(f"{renderer.name}: golden render {path!r} is not one this eqsdk "
                              f"makes ({', '.join(got)})")
        diffs[path] = float(np.abs(got[path] - np.asarray(want, np.float64)).max())
    worst = max(diffs, key=diffs.get)
    if not diffs[worst] <= golden.tolerance or not math.isfinite(diffs[worst]):
        raise BundleError(f"{renderer.name}: the golden {worst} differs from the one recorded at "
                          f"export by {diffs[worst]:.2g} (tolerance {golden.tolerance:g}): a graph "
                          f"of this bundle is not the model that was exported")
    return diffs


def random_inputs(graph: str, config, batch: int, seed: int, reference=None) -> dict[str, np.ndarray]:
    """Inputs like the real ones: images in [0, 1], theta near the identity, and features from
    the reference's encoders when it is given (else ~ N(0, 1)): random features are far rougher
    than real ones and make fp16's small theta errors look large."""
    rng = np.random.default_rng([seed, batch])
    out = {}
    for name, shape in GRAPHS[graph].inputs.items():
        shape = resolve(shape, config, batch)
        if GRAPHS[graph].inputs[name] == IMAGE:
            out[name] = rng.random(shape, dtype=np.float32)
        elif name == "origin":
            out[name] = rng.uniform(-0.3, 0.3, shape).astype(np.float32)
        elif name == "theta":
            out[name] = (np.array([[1, 0, 0], [0, 1, 0]], np.float32)
                         + 0.2 * rng.standard_normal(shape, dtype=np.float32))
        elif reference is not None:
            s = config["image_size"]
            x = reference.upload(rng.random((batch, 3, s, s), dtype=np.float32))
            encoder = "f_b" if name == "z_bg" else "f_c"
            out[name] = reference.download(reference.run(encoder, x=x)["z"])
        else:
            out[name] = rng.standard_normal(shape, dtype=np.float32)
    return out


def graph_diffs(reference, candidate, inputs, graphs, batches=(1, 4)) -> dict[str, float]:
    """Max abs difference per graph of `graphs`, over its outputs and the batch sizes, between two
    ways of running it: reference(graph, x) and candidate(graph, x) -> {output: array}, on the
    same x = inputs(graph, batch) -> {input: float32 array}."""
    worst = {}
    for graph in graphs:
        diffs = []
        for b in batches:
            x = inputs(graph, b)
            want, got = reference(graph, x), candidate(graph, x)
            diffs += [float(np.abs(np.asarray(want[k]) - np.asarray(got[k])).max())
                      for k in GRAPHS[graph].outputs]
        worst[graph] = max(diffs)
    return worst


def backend_runner(backend):
    """backend.run for graph_diffs: host arrays in and out."""
    return lambda graph, x: {k: backend.download(v) for k, v in
                             backend.run(graph, **{n: backend.upload(a) for n, a in x.items()}).items()}


def compare(reference, candidate, config, batches=(1, 4), seed: int = 0) -> dict[str, float]:
    """graph_diffs of a backend against the reference backend on random_inputs, over the
    bundle's graphs."""
    return graph_diffs(backend_runner(reference), backend_runner(candidate),
                       lambda graph, b: random_inputs(graph, config, b, seed, reference),
                       reference.manifest.graphs, batches)


def describe_checks(renderer, golden: dict[str, float] | None) -> list[str]:
    """What checking the bundle covered, one line each (eqsdk info and verify print them)."""
    m = renderer.manifest
    lines = [f"sha256 of every graph file ({', '.join(e.file for e in m.graphs.values())}) "
             "against the manifest",
             f"interfaces: each graph's inputs and outputs as eqsdk expects them "
             f"({renderer.backend.describe().split(',')[0]})"]
    if golden is None:
        lines.append("golden render: none recorded in this bundle, so its graphs' weights are unchecked")
    else:
        g = m.golden
        lines.append(f"golden render: {g.batch} fixed scenes through " + ", ".join(golden)
                     + f" on the CPU, max abs diff {max(golden.values()):.1e} <= {g.tolerance:g} "
                     f"({g.pool}x{g.pool} pixel means)")
    return lines
