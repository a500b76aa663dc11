"""Regenerate examples/drive/drive.gif, a driving clip for `eqsdk animate`: one Moving MNIST test
digit (unseen in training) taking 11 random steps, each a rotation or a translation
(MovingMNIST.random_step), on a test background. Deterministic for a seed.

    python -m examples.make_drive_clip [--data-dir DIR]    (from the repository root)
"""
import argparse
from pathlib import Path

import numpy as np

import eqsdk
from eqsdk.images import to_uint8
from train.moving_mnist import MovingMNIST

FRAMES, FPS, SEED = 12, 5, 3
OUT = Path(__file__).resolve().parent / "drive" / "drive.gif"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="the data directory holding mnist/ (train/data_dir.py)")
    args = p.parse_args(argv)
    data = MovingMNIST("test", frames=1, data_dir=args.data_dir)
    rng = np.random.default_rng(SEED)
    start = data.sample_videos(1, rng)  # a digit, a background and a start pose
    digit = start.digits[0, 0]
    states = [start.states[0, 0, 0]]
    for _ in range(FRAMES - 1):
        states.append(data.random_step(digit, states[-1], rng))
    bg = data.backgrounds[start.backgrounds[0]]
    frames = data.render(np.full((FRAMES, 1), digit), np.stack(states)[:, None],
                         bg.expand(FRAMES, -1, -1, -1))  # (FRAMES, 3, 64, 64)
    OUT.parent.mkdir(exist_ok=True)
    eqsdk.save_clip([to_uint8(f) for f in frames.numpy()], OUT, fps=FPS, overwrite=True)
    print(f"wrote {OUT} ({FRAMES} frames, {FPS} fps, {OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
