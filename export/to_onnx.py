"""Checkpoint -> model bundle: the four ONNX graphs f_c, f_b, t_z, g (opset 18, dynamic batch),
the warp graph (T^Z's transform-apply alone, for cached motions) and a manifest; each graph is
checked against PyTorch with ONNX Runtime, then the whole render end to end.

    python -m export.to_onnx runs/mnist/last.pt --out eqsdk/models/mnist \
        --eval runs/mnist/eval/metrics.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

import eqsdk
from eqsdk import verify
from eqsdk.errors import EqsdkError, InputError
from eqsdk.graphs import GRAPHS, REQUIRED, resolve
from eqsdk.manifest import GraphEntry, Golden, Manifest, frozen, read_manifest, training_record
from eqsdk.verify import (GOLDEN_BATCH, GOLDEN_POOL, GOLDEN_SEED, GOLDEN_TOLERANCE, backend_runner,
                          golden_renders, graph_diffs, random_inputs)
from train.checkpoint import load_checkpoint
from train.model import ModelConfig, SceneModel

OPSET = 18  # TensorRT parses neither AffineGrid nor opset-20 GridSample correctly
TOLERANCE = verify.TOLERANCE["fp32"]  # max abs difference, ONNX Runtime vs PyTorch


class Warp(torch.nn.Module):
    """theta o z_c about z_c's own centre: T^Z's transform-apply alone."""

    def __init__(self, t_z):
        super().__init__()
        self.t_z = t_z

    def forward(self, theta, origin, z_c):
        return self.t_z.move(theta, origin, z_c)


def graph_modules(model: SceneModel) -> dict[str, torch.nn.Module]:
    """The module behind each graph; its forward takes the graph's inputs in spec order."""
    return {"f_c": model.f_c, "f_b": model.f_b, "t_z": model.t_z, "g": model.g,
            "warp": Warp(model.t_z)}


def example_inputs(name: str, cfg: ModelConfig, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """eqsdk.verify.random_inputs of a graph, as tensors."""
    return {k: torch.from_numpy(v) for k, v in random_inputs(name, cfg.to_dict(), batch, seed).items()}


def export_graph(module: torch.nn.Module, name: str, cfg: ModelConfig, path: Path) -> None:
    spec = GRAPHS[name]
    inputs = example_inputs(name, cfg, batch=2)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs.values()), path, input_names=list(spec.inputs),
                          output_names=list(spec.outputs), opset_version=OPSET, dynamo=True,
                          dynamic_shapes={k: {0: batch} for k in inputs}, external_data=False,
                          verbose=False)
    graph = onnx.load(path)
    strip_node_metadata(graph)
    onnx.save(graph, path)
    onnx.checker.check_model(graph, full_check=True)
    ops = {n.op_type for n in graph.graph.node}
    if "AffineGrid" in ops:  # TensorRT parses neither AffineGrid nor opset-20 GridSample
        raise RuntimeError(f"{name}: AffineGrid must be built from plain ops")
    if name in ("t_z", "warp"):
        if "GridSample" not in ops:
            raise RuntimeError(f"{name} must apply the transform with a GridSample op")


def strip_node_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node metadata (stack traces with this machine's absolute paths,
    FX node dumps): it leaks local paths and changes every graph's bytes whenever a line of the
    model's source moves, though it is never read at run time."""
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            del node.metadata_props[:]
            for attribute in node.attribute:  # subgraphs (If, Loop): none today, but be thorough
                graphs += ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_parity(model: SceneModel, bundle_dir: Path, batches=(1, 5)) -> dict[str, float]:
    """Max abs difference ONNX Runtime vs PyTorch per graph and for a full render."""
    renderer = eqsdk.load(bundle_dir)
    cfg, modules = model.cfg, graph_modules(model)

    def torch_runner(graph: str, x: dict) -> dict:
        with torch.no_grad():
            out = modules[graph](*(torch.from_numpy(a) for a in x.values()))
        return {k: t.numpy() for k, t in zip(GRAPHS[graph].outputs, out if isinstance(out, tuple) else (out,))}

    worst = graph_diffs(torch_runner, backend_runner(renderer.backend),
                        lambda graph, b: random_inputs(graph, cfg.to_dict(), b, seed=b), modules, batches)
    gen = torch.Generator().manual_seed(1)
    s = cfg.image_size
    x_c, x_t1, x_t2, x_b = torch.rand(4, 3, 3, s, s, generator=gen)
    with torch.no_grad():
        ref = model(x_c, x_t1, x_t2, x_b).numpy()
    got = renderer.render_arrays(x_c.numpy(), x_t1.numpy(), x_t2.numpy(), x_b.numpy())
    worst["render"] = float(np.abs(ref - got).max())
    return worst


def export_bundle(checkpoint: Path, out: Path, name: str, evaluation: dict | None = None,
                  training: dict | None = None, force: bool = False) -> Manifest:
    """Write the bundle of `checkpoint` into `out`: graphs, then a manifest with the golden
    renders and the parity measured on them; returns the manifest as eqsdk reads it back."""
    model, ckpt = load_checkpoint(checkpoint)
    cfg = model.cfg.to_dict()
    if out.exists() and not out.is_dir():
        raise InputError(f"bundle folder {str(out)!r} is a file; expected a new or empty folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"bundle folder {str(out)!r} exists and is not empty; expected a new or empty "
                         "folder, or --force to replace it")
    if training is None:
        training = {"command": ckpt.get("command"), "recipe": ckpt.get("recipe"),
                    "stage": ckpt.get("stage"), "step": ckpt["step"], "samples": ckpt["samples"],
                    "minutes": round(ckpt["elapsed"] / 60, 1),
                    "train_config": ckpt.get("train_config"), "init_from": ckpt.get("init_from")}
    with tempfile.TemporaryDirectory() as tmp:  # build aside, then replace: never half a bundle
        tmp = Path(tmp)
        for graph, module in graph_modules(model).items():
            export_graph(module, graph, model.cfg, tmp / GRAPHS[graph].file)
        manifest = Manifest(
            name=name, opset=OPSET, config=frozen(cfg),
            graphs={g: GraphEntry(g, GRAPHS[g].file, sha256(tmp / GRAPHS[g].file), GRAPHS[g].doc,
                                  {k: resolve(v, cfg) for k, v in GRAPHS[g].inputs.items()},
                                  {k: resolve(v, cfg) for k, v in GRAPHS[g].outputs.items()})
                    for g in REQUIRED},
            golden=None, training=training_record(training, checkpoint), evaluation=frozen(evaluation or {}),
            parity={}, precision="fp32")
        manifest.write(tmp)
        renderer = eqsdk.load(tmp)
        thumbs = golden_renders(renderer, GOLDEN_SEED, GOLDEN_BATCH, GOLDEN_POOL)
        golden = Golden(GOLDEN_SEED, GOLDEN_BATCH, GOLDEN_POOL, GOLDEN_TOLERANCE,
                        {k: np.round(v, 7).tolist() for k, v in thumbs.items()})
        parity = check_parity(model, tmp)
        bad = {k: v for k, v in parity.items() if v > TOLERANCE}
        if bad:  # the exporter's bug, not the user's input
            raise RuntimeError(f"parity check failed (tolerance {TOLERANCE}): {bad}")
        replace(manifest, golden=golden, parity=parity).write(tmp)
        manifest = read_manifest(tmp)  # what eqsdk will read: parsed, every sha256 checked
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    return manifest


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--name", default=None, help="bundle name (default: the directory's name)")
    p.add_argument("--eval", type=Path, help="metrics JSON from train.evaluate to record")
    p.add_argument("--force", action="store_true", help="replace an existing bundle")
    args = p.parse_args(argv)
    try:
        evaluation = json.loads(args.eval.read_text()) if args.eval else None
        manifest = export_bundle(args.checkpoint, args.out, args.name or args.out.name, evaluation,
                                 force=args.force)
    except (EqsdkError, OSError, json.JSONDecodeError) as e:  # a bad checkpoint or metrics file
        raise SystemExit(f"error: {e}") from None
    print(json.dumps(dict(manifest.parity), indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
