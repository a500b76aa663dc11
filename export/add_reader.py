"""Add a motion reader (train/distill.py) to the bundle it was distilled from: reader.onnx, checked
against PyTorch with ONNX Runtime, and the manifest's entry for it, with the reader's training
and its evaluation (train/evaluate_reader.py) under evaluation.reader.

    python -m export.add_reader eqsdk/models/mnist runs/reader-mnist/reader.pt \
        --eval results/reader-mnist/metrics.json

The bundle's other files are left as they are; a reader it already has is replaced.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from eqsdk.errors import BundleError, EqsdkError
from eqsdk.graphs import GRAPHS, resolve
from eqsdk.manifest import MANIFEST, GraphEntry, frozen, read_manifest
from eqsdk.verify import backend_runner, golden_renders, graph_diffs, random_inputs
from export.from_bundle import from_bundle
from export.to_onnx import TOLERANCE, export_graph, sha256
from train.checkpoint import read_checkpoint
from train.evaluate_reader import load_reader


def add_reader(bundle: Path, checkpoint: Path, evaluation: dict | None = None) -> float:
    """Write reader.onnx and the manifest's entry into `bundle`; returns the parity (max abs
    difference ONNX Runtime vs PyTorch)."""
    import eqsdk

    model, manifest = from_bundle(bundle)
    ckpt = read_checkpoint(checkpoint)
    teacher = ckpt["bundle"]["sha256"]
    if any(manifest.graphs[g].sha256 != teacher[g] for g in ("f_c", "t_z")):
        raise BundleError(f"{checkpoint}: a reader distilled from another f_c or T^Z than "
                          f"{bundle}'s; expected one trained on this bundle (train.distill {bundle})")
    reader, spec, cfg = load_reader(checkpoint, model), GRAPHS["reader"], dict(manifest.config)
    record = {"reader_config": ckpt["reader_config"], "distill_config": ckpt["distill_config"],
              "steps": ckpt["state"]["step"], "samples": ckpt["state"]["samples"],
              "minutes": round(ckpt["state"]["elapsed"] / 60, 1), "validation": ckpt["validation"],
              "evaluation": evaluation}
    with tempfile.TemporaryDirectory() as tmp:  # build aside: never half a bundle
        tmp = Path(tmp)
        for entry in manifest.graphs.values():
            if entry.name != "reader":
                shutil.copyfile(bundle / entry.file, tmp / entry.file)
        export_graph(reader, "reader", model.cfg, tmp / spec.file)
        entry = GraphEntry("reader", spec.file, sha256(tmp / spec.file), spec.doc,
                           {k: resolve(v, cfg) for k, v in spec.inputs.items()},
                           {k: resolve(v, cfg) for k, v in spec.outputs.items()})
        graphs = {g: entry if g == "reader" else manifest.graphs[g] for g in GRAPHS
                  if g in manifest.graphs or g == "reader"}
        new = replace(manifest, graphs=graphs, evaluation=frozen({**manifest.evaluation, "reader": record}))
        new.write(tmp)
        if manifest.golden is not None:  # the reader's drive joins the golden renders
            thumbs = golden_renders(eqsdk.load(tmp), manifest.golden.seed, manifest.golden.batch, manifest.golden.pool)
            renders = {**manifest.golden.renders, "drive_reader": np.round(thumbs["drive_reader"], 7).tolist()}
            new = replace(new, golden=replace(manifest.golden, renders=frozen(renders)))

        def torch_runner(graph: str, x: dict) -> dict:
            with torch.no_grad():
                out = reader(*(torch.from_numpy(a) for a in x.values()))
            return {k: t.numpy() for k, t in zip(spec.outputs, out)}

        parity = graph_diffs(torch_runner, backend_runner(eqsdk.load(tmp).backend),
                             lambda graph, b: random_inputs(graph, cfg, b, seed=b), ["reader"], (1, 5))["reader"]
        if parity > TOLERANCE:  # the exporter's bug, not the user's input
            raise RuntimeError(f"reader parity check failed: {parity:.2g} > {TOLERANCE}")
        replace(new, parity=frozen({**manifest.parity, "reader": parity})).write(tmp)
        read_manifest(tmp)  # what eqsdk will read: parsed, every sha256 checked
        shutil.copyfile(tmp / spec.file, bundle / spec.file)
        shutil.copyfile(tmp / MANIFEST, bundle / MANIFEST)  # last: until now the bundle was whole as it was
    return parity


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("checkpoint", type=Path, help="train.distill's OUT/reader.pt")
    p.add_argument("--eval", type=Path, help="metrics JSON from train.evaluate_reader to record")
    args = p.parse_args(argv)
    try:
        evaluation = json.loads(args.eval.read_text()) if args.eval else None
        parity = add_reader(args.bundle, args.checkpoint, evaluation)
    except (EqsdkError, OSError, json.JSONDecodeError) as e:
        sys.exit(f"error: {e}")
    print(f"added {args.bundle / GRAPHS['reader'].file} (parity {parity:.1e})", file=sys.stderr)


if __name__ == "__main__":
    main()
