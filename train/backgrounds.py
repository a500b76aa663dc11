"""Diamond backgrounds of §4.2: a CSS4 colour (never black) with five diamonds of other colours."""
from __future__ import annotations

import numpy as np
import torch
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


def recolour_backgrounds(bgs: torch.Tensor, rng: np.random.Generator, p: float) -> torch.Tensor:
    """With probability p per background (B, 3, S, S), its colours redrawn from the palette, all
    different, as make_background draws them: the layout of the diamonds is kept, the canvas is
    still never black. A fixed set of backgrounds then shows its shapes in every colour, so a
    static dark diamond is seen often enough not to be taken for a digit's ink."""
    out = bgs.clone()
    palette = torch.from_numpy(PALETTE)
    # Each pixel's colour as one integer (24-bit RGB): a 1-D unique is much faster than rows'.
    keys = (bgs * 255).round().long()
    keys = (keys[:, 0] << 16) | (keys[:, 1] << 8) | keys[:, 2]  # (B, S, S)
    for k in np.flatnonzero(rng.random(len(bgs)) < p):
        colours, regions = torch.unique(keys[k], return_inverse=True)  # (U,), (S, S)
        new = palette[torch.from_numpy(rng.choice(len(PALETTE), size=len(colours), replace=False))]
        out[k] = new[regions].permute(2, 0, 1)
    return out
