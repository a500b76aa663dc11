"""Write the sprites data set's training split as MP4 clips, one per character and sequence, so the
`sprites` recipe can be trained through `eqsdk train` / `videos:DIR` exactly as a user's footage is.

    python -m examples.sprites_to_videos --out DIR [--split train] [--crf 23]
    python -m train.train --dataset videos:DIR --max-gap 12 ...   # the recipe's stage, from video

Each clip is one (character, animation, viewpoint) sequence of train/lpc.py's split (6 to 13
frames of 64x64, on the white canvas the sprites bundle is trained on), written with PyAV as H.264
yuv420p at 12 fps: what a user would get from exporting these sprites as video. The in-memory
generator (dataset "sprites") draws two frames of one random sequence; train/videos.py draws two
frames of one video, so one sequence per video makes the two data sets hold the same pairs.
Written to DIR.partial and renamed onto DIR, so an interrupted run leaves no DIR.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from eqsdk.errors import EqsdkError
from examples.make_footage import CRF, write_mp4
from train import lpc


def sequence_frames(split: lpc.SpriteSplit, character: int, sequence: int) -> np.ndarray:
    """(n, 64, 64, 3) uint8: one sequence composited over white, as the sprites data set draws it."""
    first = lpc.SEQ_STARTS[sequence]
    rgba = split.frames[character, first:first + lpc.SEQ_LENGTHS[sequence]].astype(np.float32) / 255
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return np.rint(rgb * 255).astype(np.uint8)


def sprites_to_videos(out: Path, split: str = "train", crf: int = CRF, data_dir: Path | None = None) -> int:
    """Write every sequence of the split's characters under out/; returns the number of clips."""
    out = Path(out)
    if out.exists():
        raise EqsdkError(f"{out}: already exists; expected a new folder")
    data = lpc.load_split(split, data_dir=data_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for c, character_id in enumerate(data.ids):
            for s in range(lpc.N_SEQUENCES):
                animation, viewpoint = lpc.ANIMATIONS[s // 4], lpc.VIEWPOINTS[s % 4]
                write_mp4(sequence_frames(data, c, s), tmp / f"{character_id:04d}-{animation}-{viewpoint}.mp4",
                          crf=crf)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(data.ids) * lpc.N_SEQUENCES


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m examples.sprites_to_videos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="a new folder")
    p.add_argument("--split", default="train", choices=list(lpc.SPLIT_SIZES))
    p.add_argument("--crf", type=int, default=CRF, help=f"H.264 quality, lower is better (default {CRF})")
    p.add_argument("--data-dir", type=Path, help="the data directory holding lpc/ (train/data_dir.py)")
    args = p.parse_args(argv)
    try:
        n = sprites_to_videos(args.out, args.split, args.crf, args.data_dir)
    except EqsdkError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {n} clips to {args.out}")


if __name__ == "__main__":
    main()
