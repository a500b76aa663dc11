"""`eqsdk verify`: every backend available here against ONNX Runtime CPU on the same inputs."""
from __future__ import annotations

import numpy as np

from eqsdk.graphs import GRAPHS, resolve

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}  # max abs difference per graph output


def random_inputs(graph: str, config: dict, batch: int, seed: int, reference=None) -> dict[str, np.ndarray]:
    """Inputs like the real ones: images in [0, 1], theta near the identity, and features from
    the reference's encoders when it is given (else ~ N(0, 1)): random features are far rougher
    than real ones and make fp16's small theta errors look large."""
    rng = np.random.default_rng([seed, batch])
    out = {}
    for name, shape in GRAPHS[graph].inputs.items():
        shape = resolve(shape, config, batch)
        if name == "x":
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


def compare(reference, candidate, config: dict, batches=(1, 4), seed: int = 0) -> dict[str, float]:
    """Max abs difference per graph (over its outputs and the batch sizes)."""
    worst = {}
    for graph in GRAPHS:
        diffs = []
        for b in batches:
            x = random_inputs(graph, config, b, seed, reference)
            want = reference.run(graph, **{k: reference.upload(v) for k, v in x.items()})
            got = candidate.run(graph, **{k: candidate.upload(v) for k, v in x.items()})
            diffs += [float(np.abs(reference.download(want[k]) - candidate.download(got[k])).max())
                      for k in GRAPHS[graph].outputs]
        worst[graph] = max(diffs)
    return worst
