"""Write example inputs from the test split (unseen digits and backgrounds) with ground truth.

    python -m train.make_examples --out examples

For each case: char.png (a frame whose digit is rendered), bg.png (a frame of another video whose
background is used), anim_start.png / anim_end.png (two frames of a third video: the motion),
expected.png (the truth: char's digit moved by the motion's T^X on bg's background) and, in
cases.json, the MSE against the truth of two baselines: the digit left unmoved on that background,
and the background alone (no digit).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from eqsdk.images import to_uint8
from train.moving_mnist import MovingMNIST, transfer
from PIL import Image


def save(x: torch.Tensor, path: Path) -> None:
    Image.fromarray(to_uint8(x.numpy())).save(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cases", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--data-dir", type=Path, help="the data directory holding mnist/ (train/data_dir.py)")
    args = p.parse_args(argv)
    data = MovingMNIST("test", data_dir=args.data_dir)
    rng = np.random.default_rng(args.seed)
    cases = []
    while len(cases) < args.cases:
        v = data.sample_videos(3, rng)  # character, background, animation
        s_char, s_bg, s_anim = v.states[0, 0, 0], v.states[1, 0, 0], v.states[2, :, 0]
        s_start, s_end = s_anim[0], s_anim[-1]
        moved = transfer(s_char, s_start, s_end)
        angle = abs(s_end[2] - s_start[2])
        if not data.inside(v.digits[0, 0], moved) or angle < 6:  # show a visible rotation too
            continue
        bgs = data.backgrounds[torch.from_numpy(v.backgrounds)]
        render = lambda k, s, bg: data.render(v.digits[k:k + 1], s[None, None], bg[None])[0]  # noqa: E731
        images = {
            "char": render(0, s_char, bgs[0]), "bg": render(1, s_bg, bgs[1]),
            "anim_start": render(2, s_start, bgs[2]), "anim_end": render(2, s_end, bgs[2]),
            "expected": render(0, moved, bgs[1]),
        }
        unmoved = render(0, s_char, bgs[1])
        truth = images["expected"]
        name = f"case{len(cases) + 1}"
        (args.out / name).mkdir(parents=True, exist_ok=True)
        for key, x in images.items():
            save(x, args.out / name / f"{key}.png")
        cases.append({"name": name, "rotation_deg": float(s_end[2] - s_start[2]),
                      "translation_px": [float(t) for t in s_end[:2] - s_start[:2]],
                      "unmoved_mse": float((unmoved - truth).square().mean()),
                      "no_object_mse": float((bgs[1] - truth).square().mean())})
    (args.out / "cases.json").write_text(json.dumps(cases, indent=2) + "\n")
    print(json.dumps(cases, indent=2))


if __name__ == "__main__":
    main()
