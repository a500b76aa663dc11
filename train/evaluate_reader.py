"""What a motion reader costs in quality: renders with the reader's motion beside renders with
T^Z's, on the test split of the data the bundle was trained on.

    python -m train.evaluate_reader eqsdk/models/mnist runs/reader-mnist/reader.pt --out results/reader-mnist

Every dataset: Reconstruction, h(x1, x1, x2, x1) vs x2 on test pairs (§4.1's training render;
footage: its held-out videos).
Moving MNIST also: the Transformation and Background manipulations of train.evaluate (same
examples, same seed) and their ratios to its baselines. Per-pixel MSE of images in [0, 1], with
T^Z ("t_z") and with the reader ("reader"); "theta_rms" is the RMS displacement between the two
motions (train.distill.validation) on the reconstruction pairs.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eqsdk.errors import EqsdkError
from export.from_bundle import from_bundle
from train.checkpoint import read_checkpoint
from train.datasets import VIDEOS
from train.distill import pairs_of, reader_render, validation
from train.evaluate import batched, evaluate_manipulations, mse
from train.model import MotionReader, ReaderConfig, SceneModel


def load_reader(path: Path, model: SceneModel) -> MotionReader:
    ckpt = read_checkpoint(path)
    reader = MotionReader(model.cfg, ReaderConfig.from_dict(ckpt["reader_config"]))
    reader.load_state_dict(ckpt["reader"])
    return reader.eval()


def compare(model: SceneModel, reader: MotionReader, dataset: dict, pairs: int, examples: int,
            seed: int = 0) -> dict:
    """Mean MSE per render with T^Z and with the reader (see the module doc)."""
    footage = dataset.get("dataset", "mnist").startswith(VIDEOS)
    test = pairs_of(model, dataset, "val" if footage else "test")  # footage is split in two
    x1, x2, _ = test.sample_pairs(pairs, np.random.default_rng([seed, 2]))
    read = lambda *x: reader_render(model, reader, *x)  # noqa: E731
    out = {"reconstruction": {"t_z": float(mse(batched(model, x1, x1, x2, x1), x2).mean()),
                              "reader": float(mse(batched(read, x1, x1, x2, x1), x2).mean()),
                              "pairs": pairs},
           "theta_rms": validation(model, reader, (x1, x2))}
    if dataset.get("dataset", "mnist") == "mnist":
        per_example, ex = evaluate_manipulations(model, test, examples, seed)  # T^Z's, and the examples
        for name, args, truth in (("transformation", ("x2i", "x1i", "x1j", "x2i"), "gt_transformation"),
                                  ("background", ("x1i", "x1i", "x1j", "x2j"), "gt_background")):
            got = mse(batched(read, *(ex[a] for a in args)), ex[truth])
            out[name] = {"t_z": float(per_example[name].mean()), "reader": float(got.mean()),
                         "examples": examples}
        out["ratios"] = {
            "transformation_vs_video_frames": {
                k: out["transformation"][k] / float(per_example["video_frames"].mean()) for k in ("t_z", "reader")},
            "background_vs_no_object": {
                k: out["background"][k] / float(per_example["no_object"].mean()) for k in ("t_z", "reader")}}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="the bundle whose f_c and T^Z taught the reader")
    p.add_argument("reader", type=Path, help="reader checkpoint (train.distill's OUT/reader.pt)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--examples", type=int, default=2000, help="Moving MNIST manipulation examples")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        model, manifest = from_bundle(args.bundle)
        reader = load_reader(args.reader, model)
    except EqsdkError as e:
        sys.exit(f"train.evaluate_reader: {e}")
    dataset = dict(manifest.training.train_config) if manifest.training else {}
    with torch.inference_mode():
        metrics = compare(model, reader, dataset, args.pairs, args.examples, args.seed)
    metrics.update(split="test", units="per-pixel MSE, images in [0, 1]",
                   command="python -m train.evaluate_reader " + shlex.join(sys.argv[1:] if argv is None else argv),
                   seconds=round(time.time() - t0, 1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
