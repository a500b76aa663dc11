"""T^Z's r² (§4.6) over many draws of one digit, each on its own background: how often T^Z meets a
hard draw, beyond the evaluation's one draw per digit. A validation-split stand-in for the test
split's hard digit-5 draw (README).

    python -m train.tz_draws runs/sym-a2/last.pt --out results/mnist-tz/draws-sym-a2.json

Draw k is tz_draw's seed FIRST_SEED + k: none of them is one of train.evaluate's draws (seeds
0 to 8), so these draws are not among those it reports.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from train.evaluate import tz_analysis
from train.checkpoint import load_checkpoint
from train.moving_mnist import MovingMNIST, load_mnist_labels

FIRST_SEED = 100


def summary(r2: np.ndarray, prefix: str = "") -> dict:
    return {prefix + k: v for k, v in {
        "mean": float(r2.mean()), "median": float(np.median(r2)), "min": float(r2.min()),
        "below_0.9": int((r2 < 0.9).sum()), "r2": [round(float(v), 4) for v in r2]}.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--digit", type=int, default=5)
    p.add_argument("--draws", type=int, default=32)
    p.add_argument("--pairs", type=int, default=1000, help="pairs per draw")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checked", action="store_true", help="also T^Z's reading checked by the renderer")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, ckpt = load_checkpoint(args.checkpoint)
    model.eval()
    data = MovingMNIST(args.split, n_digits=1, n_backgrounds=64, seed=ckpt["train_config"].get("seed", 0))
    labels = load_mnist_labels(args.split)
    analyses = [tz_analysis(model, data, args.digit, labels, args.pairs, FIRST_SEED + k, args.checked)
                for k in range(args.draws)]
    r2 = np.array([a["r2"] for a in analyses])
    report = {"checkpoint": str(args.checkpoint), "split": args.split, "digit": args.digit,
              "draws": args.draws, "pairs_each": args.pairs, **summary(r2),
              **(summary(np.array([a["r2_checked"] for a in analyses]), "checked_") if args.checked else {}),
              "seconds": round(time.perf_counter() - start, 1)}
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
