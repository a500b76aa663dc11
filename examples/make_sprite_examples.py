"""Regenerate examples/sprites/: LPC test characters (unseen in training) for the sprites models.

  knight.png            a knight (chain mail, metal greaves, plate arms, no spear) standing,
                        facing right, on white: the canvas of the `sprites` model
  knight_bg.png         the same knight on a test diamond background, for `sprites-bg`
  walk_sequence.gif     a test character of the other sex walking right (9 frames), on white
  knight_walk.gif       the knight's own walk, right (9 frames): the truth of animating the
                        knight with walk_sequence.gif
  thrust_sequence.gif   a spear carrier thrusting, facing right (8 frames), on white
  unseen.png            a character of the open data set's test-layers split (train/lpc_open.py),
                        standing, facing right, on white: long red hair and a plate chest, two
                        layers no training character wears, with magenta pants and a shield
  unseen_walk.gif       its own walk, right (9 frames): the truth of animating it with
                        walk_sequence.gif

    python -m examples.make_sprite_examples [--data-dir DIR]    (from the repository root)

Deterministic: the characters are picked by their attributes from the fixed test split. The art
is from the Liberated Pixel Cup (see LICENSES/LPC-CREDITS.md).
"""
import argparse
from pathlib import Path

import numpy as np

import eqsdk
from train import lpc, lpc_open
from train.backgrounds import make_backgrounds

OUT = Path(__file__).resolve().parent / "sprites"
FPS = 10  # GIF stores frame times in centiseconds: 10 fps is exact
UNSEEN = 4  # the test-layers character of unseen.png


def pick(split: lpc.SpriteSplit, **wanted: str) -> int:
    """The first character of the split with these attribute options."""
    for row, attrs in enumerate(split.attributes):
        names = dict(zip(lpc.ATTRIBUTE_NAMES, (lpc.OPTION_NAMES[n][k] for n, k in zip(lpc.ATTRIBUTE_NAMES, attrs))))
        if all(names[k] == v for k, v in wanted.items()):
            return row
    raise LookupError(f"no test character with {wanted}")


def over(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(..., 64, 64, 4) uint8 over (64, 64, 3) uint8 by alpha -> uint8 RGB."""
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return np.rint(rgba[..., :3] * alpha + background * (1 - alpha)).astype(np.uint8)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="the data directory holding lpc/ (train/data_dir.py)")
    args = p.parse_args(argv)
    test = lpc.load_split("test", data_dir=args.data_dir)
    white = np.full((lpc.CELL, lpc.CELL, 3), 255, np.uint8)
    knight = pick(test, armour="chain", greaves="metal", arms="plate", weapon="longsword")
    walker = pick(test, sex="female", armour="leather", greaves="pants")
    spear = pick(test, weapon="spear", armour="leather")
    OUT.mkdir(exist_ok=True)
    standing = test.sequence(knight, "walk", "right")[0]
    eqsdk.save_image(over(standing, white), OUT / "knight.png", overwrite=True)
    background = np.rint(make_backgrounds("test", 1, size=lpc.CELL)[0] * 255)  # the first test background
    eqsdk.save_image(over(standing, background), OUT / "knight_bg.png", overwrite=True)
    eqsdk.save_clip(list(over(test.sequence(walker, "walk", "right"), white)), OUT / "walk_sequence.gif",
                    fps=FPS, overwrite=True)
    eqsdk.save_clip(list(over(test.sequence(knight, "walk", "right"), white)), OUT / "knight_walk.gif",
                    fps=FPS, overwrite=True)
    eqsdk.save_clip(list(over(test.sequence(spear, "thrust", "right"), white)), OUT / "thrust_sequence.gif",
                    fps=FPS, overwrite=True)
    unseen = lpc_open.OpenSprites.load("test-layers", data_dir=args.data_dir)
    k = UNSEEN
    eqsdk.save_image(over(unseen.sequence(k, "walk", "right")[0], white), OUT / "unseen.png", overwrite=True)
    eqsdk.save_clip(list(over(unseen.sequence(k, "walk", "right"), white)), OUT / "unseen_walk.gif",
                    fps=FPS, overwrite=True)
    print(f"unseen: test-layers character {k} ({unseen.describe(k)})")
    for row, role in ((knight, "knight"), (walker, "walk"), (spear, "thrust")):
        print(f"{role}: test character {test.ids[row]} ({lpc.describe(test.attributes[row])})")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
