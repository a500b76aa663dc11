"""Diamond backgrounds of §4.2: a CSS4 colour (never black) with five diamonds of other colours."""
from __future__ import annotations

import numpy as np
from matplotlib.colors import CSS4_COLORS, to_rgb

SPLITS = ("train", "val", "test")
N_DIAMONDS = 5
RADIUS_RANGE = (7, 10)  # inclusive, in pixels

# Sorted so that the same seed gives the same colours whatever the dict order.
PALETTE_NAMES = tuple(sorted(name for name in CSS4_COLORS if name != "black"))
PALETTE = np.array([to_rgb(CSS4_COLORS[name]) for name in PALETTE_NAMES], dtype=np.float32)


def split_rng(seed: int, split: str, stream: str) -> np.random.Generator:
    """An independent random stream per (seed, split, purpose), so splits never share draws."""
    return np.random.default_rng([seed, SPLITS.index(split), sum(map(ord, stream))])


def make_background(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, dict]:
    """One background, (size, size, 3) float32 in [0, 1], and the recipe that drew it."""
    colours = rng.choice(len(PALETTE), size=1 + N_DIAMONDS, replace=False)  # all different
    image = np.empty((size, size, 3), np.float32)
    image[:] = PALETTE[colours[0]]
    ys, xs = np.mgrid[0:size, 0:size]
    diamonds = []
    for colour in colours[1:]:
        cx, cy = (int(v) for v in rng.integers(0, size, size=2))
        r = int(rng.integers(RADIUS_RANGE[0], RADIUS_RANGE[1] + 1))
        image[np.abs(xs - cx) + np.abs(ys - cy) <= r] = PALETTE[colour]
        diamonds.append({"centre": (cx, cy), "radius": r, "colour": PALETTE_NAMES[colour]})
    return image, {"colour": PALETTE_NAMES[colours[0]], "diamonds": diamonds}


def make_backgrounds(split: str, count: int = 64, seed: int = 0, size: int = 64) -> np.ndarray:
    """The fixed background set of one split: (count, size, size, 3) float32."""
    rng = split_rng(seed, split, "backgrounds")
    return np.stack([make_background(rng, size)[0] for _ in range(count)])
