"""Why T^Z's r² (§4.6) is low on a draw: two diagnostics on the evaluation's digit and background.

    python -m train.diagnose_tz runs/mnist-bundle.pt --digit 5 --out results/mnist-tz/diagnosis.json

- backgrounds: T^Z's r² with each colour of the background painted over with the canvas colour,
  one at a time, and on the bare canvas: which diamond, if any, T^Z mistakes for ink.
- render_optimal: r² of the theta that minimises each pair's scene loss, found by gradient descent
  from T^Z's own theta (rotation angle and translation; f_c, f_b and g fixed). If it is high where
  T^Z's is not, the renderer knows the motion and T^Z fails to read it (an amortisation gap); if
  not, the features themselves do not carry it.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from train.evaluate import r2_score, tz_draw
from train.checkpoint import load_checkpoint
from train.model import SceneModel
from train.moving_mnist import MovingMNIST, load_mnist_labels


@torch.no_grad()
def backgrounds(model: SceneModel, data: MovingMNIST, videos, background: int, ii, jj, theta_x) -> dict:
    """r² with the draw's background as it is, bare, and with each diamond colour painted over."""
    original = data.backgrounds[background].clone()  # (3, S, S)
    canvas = original[:, :1, :1].expand_as(original)
    colours = torch.unique(original.flatten(1).T, dim=0)
    variants = {"as drawn": original, "bare canvas": canvas.clone()}
    for c in colours:
        region = (original == c.view(3, 1, 1)).all(0)
        if not torch.equal(c, original[:, 0, 0]):
            variants[f"without rgb{tuple(round(float(v), 2) for v in c)}"] = torch.where(region, canvas, original)
    out = {}
    try:
        for name, bg in variants.items():
            data.backgrounds[background] = bg
            frames = data.frames_of(videos)
            theta = model.t_z.theta(model.f_c(frames[:, ii].flatten(0, 1)), model.f_c(frames[:, jj].flatten(0, 1)))
            out[name] = r2_score(theta_x, theta.reshape(-1, 6).double().numpy())
    finally:
        data.backgrounds[background] = original
    return out


def render_optimal(model: SceneModel, frames: torch.Tensor, ii, jj, theta_x, steps: int, scan: float) -> dict:
    """r² of T^Z's theta and of the theta minimising each pair's scene loss from there."""
    x1, x2 = frames[:, ii].flatten(0, 1), frames[:, jj].flatten(0, 1)
    with torch.no_grad():
        z1, b1, z2 = model.f_c(x1), model.f_b(x1), model.f_c(x2)
        start = model.t_z.theta(z1, z2)
    found = model.render_optimal_theta(z1, b1, x2, start, steps, scan=scan, pivot=model.t_z.centre(z2))

    @torch.no_grad()
    def scene_loss(theta):
        return (model.g(model.t_z.apply(theta, z1), b1) - x2).square().mean().item()

    return {"pairs": len(x1), "steps": steps, "scan": scan,
            "tz": {"r2": r2_score(theta_x, start.reshape(-1, 6).double().numpy()), "scene_mse": scene_loss(start)},
            "optimal": {"r2": r2_score(theta_x, found.reshape(-1, 6).double().numpy()),
                        "scene_mse": scene_loss(found)}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--digit", type=int, default=5)
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--seed", type=int, default=0, help="the draw: 0 is the evaluation's")
    p.add_argument("--pairs", type=int, default=4000, help="pairs for the background diagnostic")
    p.add_argument("--optimise-pairs", type=int, default=300, help="pairs for the render-optimal theta")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--scan", type=float, default=0.0, help="first try turns up to this many degrees")
    p.add_argument("--first-video", type=int, default=0, help="the render-optimal search's videos start here")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    model, ckpt = load_checkpoint(args.checkpoint)
    model.requires_grad_(False)
    data = MovingMNIST(args.split, n_digits=1, n_backgrounds=64, seed=ckpt["train_config"].get("seed", 0))
    labels = load_mnist_labels(args.split)
    videos, ii, jj, theta_x = tz_draw(data, labels, args.digit, args.pairs, args.seed)
    background = int(videos.backgrounds[0])
    report = {"checkpoint": str(args.checkpoint), "split": args.split, "digit": args.digit, "seed": args.seed,
              "background_index": background,
              "backgrounds": backgrounds(model, data, videos, background, ii, jj, theta_x)}
    v = slice(args.first_video, args.first_video + math.ceil(args.optimise_pairs / len(ii)))
    frames = data.frames_of(type(videos)(videos.digits[v], videos.backgrounds[v], videos.states[v]))
    theta_x = theta_x.reshape(len(videos.digits), len(ii), 6)[v].reshape(-1, 6)  # those videos' pairs
    report["render_optimal"] = render_optimal(model, frames, ii, jj, theta_x, args.steps, args.scan)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
