"""Model bundle -> training checkpoint: the PyTorch weights read back out of a bundle's ONNX
graphs, so that a shipped model can be evaluated or trained further (`--init-from`) on a machine
that never had its checkpoint (runs/ is not committed).

    python -m export.from_bundle eqsdk/models/mnist --out runs/mnist-bundle.pt

The exporter names most initializers after their parameters. GroupNorm's scale and shift come
out of it as anonymous (C, 1, 1) constants, found by the Mul and Add that follow each
normalisation, in graph order; a convolution's bias that was all zeros is dropped (the Conv node
has no bias input). The rebuilt model then goes through export's parity check against the
bundle (every graph and a whole render) and must pass it, or nothing is written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from eqsdk.manifest import Manifest, read_manifest
from export.to_onnx import TOLERANCE, check_parity
from train.checkpoint import save_checkpoint
from train.model import ModelConfig, SceneModel

NETWORKS = ("f_c", "f_b", "t_z", "g")


def group_norm_affines(graph: onnx.GraphProto, inits: dict[str, np.ndarray]) -> list[tuple]:
    """(scale, shift) of each GroupNorm in graph order: the initializer multiplied into the
    normalised tensor and the one added to that product, each (C, 1, 1)."""
    producer = {o: n for n in graph.node for o in n.output}
    pairs = []
    for node in graph.node:
        if node.op_type != "Add" or not any(o.startswith("group_norm") for o in node.output):
            continue
        mul = producer[node.input[0]]
        scale = next(i for i in mul.input if i in inits)
        shift = next(i for i in node.input if i in inits)
        pairs.append((inits[scale].reshape(-1), inits[shift].reshape(-1)))
    return pairs


def unbiased(graph: onnx.GraphProto, weight: str) -> bool:
    """Whether the convolution of this weight has no bias input (the exporter dropped a zero one)."""
    return any(n.op_type in ("Conv", "ConvTranspose") and n.input[1] == weight and len(n.input) == 2
               for n in graph.node)


def network_state(path: Path, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `module` (its architecture) filled from the ONNX graph at path."""
    graph = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    norms = iter(group_norm_affines(graph, inits))
    state = {}
    for name, param in module.state_dict().items():
        owner = module.get_submodule(name.rsplit(".", 1)[0])
        if name in inits:
            value = inits[name]
        elif isinstance(owner, torch.nn.GroupNorm) and name.endswith(".weight"):
            value, shift = next(norms)
            state[name.rsplit(".", 1)[0] + ".bias"] = torch.from_numpy(shift.copy())
        elif isinstance(owner, torch.nn.GroupNorm):
            continue  # the bias: filled with its weight
        elif name.endswith(".bias") and unbiased(graph, name[:-len("bias")] + "weight"):
            value = np.zeros(param.shape, np.float32)
        else:
            raise ValueError(f"{path.name}: no initializer for parameter {name!r}")
        state[name] = torch.from_numpy(np.array(value, dtype=np.float32).reshape(param.shape))
    return state


def from_bundle(bundle: Path) -> tuple[SceneModel, Manifest]:
    """The bundle's model rebuilt in PyTorch (eval mode) and its manifest."""
    manifest = read_manifest(bundle)
    model = SceneModel(ModelConfig.from_dict(dict(manifest.config)))
    for name in NETWORKS:
        getattr(model, name).load_state_dict(network_state(bundle / manifest.graphs[name].file,
                                                           getattr(model, name)))
    return model.eval(), manifest


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.out.exists():
        sys.exit(f"{args.out} exists; not overwriting it")
    model, manifest = from_bundle(args.bundle)
    diffs = check_parity(model, args.bundle)  # every graph and a whole render, as export checks
    if max(diffs.values()) > TOLERANCE:
        sys.exit(f"rebuilt model differs from the bundle: {diffs} (tolerance {TOLERANCE})")
    training = manifest.to_json().get("training") or {"step": 0, "samples": 0, "minutes": 0.0}
    train_config = training.get("train_config") or {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # As train.train saves it, less the optimiser: a run resumed from it would start a new one;
    # use it with --init-from.
    save_checkpoint(args.out, {"model": model.state_dict(), "step": training["step"], "samples": training["samples"],
                "elapsed": training["minutes"] * 60, "seed": train_config.get("seed", 0),
                "model_config": dict(manifest.config), "train_config": train_config,
                "command": training.get("command"), "recipe": training.get("recipe"), "stage": training.get("stage"),
                "init_from": training.get("init_from"), "from_bundle": str(args.bundle)})
    print(json.dumps({"out": str(args.out), "max_abs_diff": diffs}))


if __name__ == "__main__":
    main()
