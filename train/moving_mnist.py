"""Moving MNIST on diamond backgrounds (§4.3), generated on the fly with its ground truth.

A digit's pose is a state (cx, cy, angle): centre in canvas pixels (continuous coordinates, pixel
i covers [i, i+1)) and angle in degrees, counter-clockwise as seen on screen. Each step of a video
is a rotation about the digit's centre or a translation, applied cumulatively and redrawn if the
digit's ink would leave the canvas. The image-space motion T^X between two frames is the affine map
p -> R(a_j - a_i)(p - c_i) + c_j, expressed in the normalised [-1, 1] coordinates of affine_grid.
"""
from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from train.backgrounds import make_backgrounds, recolour_backgrounds
from train.data_dir import find_data

ROTATIONS = [a for a in range(-15, 16, 3) if a]  # degrees
TRANSLATIONS = [t for t in range(-10, 11, 2) if t]  # pixels, per axis
PATCH = 28
VAL_SIZE = 5000  # the last digits of MNIST's training file are the validation split


def _read_idx(split: str, kind: str, data_dir: Path | None) -> tuple[slice, np.ndarray]:
    """The split's part of its idx file, and the file's array (train and val share MNIST's
    training file, test is t10k)."""
    name = "t10k" if split == "test" else "train"
    offset = {"images": 16, "labels": 8}[kind]
    with gzip.open(find_data("mnist", data_dir) / f"{name}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz") as f:
        data = np.frombuffer(f.read(), np.uint8, offset=offset)
    return {"train": slice(None, -VAL_SIZE), "val": slice(-VAL_SIZE, None), "test": slice(None)}[split], data


def load_mnist(split: str, data_dir: Path | None = None) -> np.ndarray:
    """MNIST digits of a split as (N, 28, 28) uint8."""
    part, data = _read_idx(split, "images", data_dir)
    return data.reshape(-1, PATCH, PATCH)[part]


def load_mnist_labels(split: str, data_dir: Path | None = None) -> np.ndarray:
    """Digit labels matching load_mnist(split)."""
    part, data = _read_idx(split, "labels", data_dir)
    return data[part]


def rotation(degrees: float) -> np.ndarray:
    """2x2 rotation, counter-clockwise on screen, in pixel coordinates where y points down."""
    a = math.radians(degrees)
    return np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])


def to_normalised(affine_px: np.ndarray, size: int) -> np.ndarray:
    """A (..., 2, 3) affine on canvas pixel coordinates -> the same map on [-1, 1] coordinates."""
    n = np.array([[2 / size, 0, -1], [0, 2 / size, -1], [0, 0, 1]])
    full = np.zeros(affine_px.shape[:-2] + (3, 3))
    full[..., :2, :] = affine_px
    full[..., 2, 2] = 1
    return (n @ full @ np.linalg.inv(n))[..., :2, :]


def affine_inverse(affine: np.ndarray) -> np.ndarray:
    """Inverse of (..., 2, 3) affine maps."""
    a_inv = np.linalg.inv(affine[..., :2, :2])
    return np.concatenate([a_inv, -a_inv @ affine[..., :2, 2:]], axis=-1)


def motion(state_i: np.ndarray, state_j: np.ndarray, size: int) -> np.ndarray:
    """T^X: the image-space affine (normalised coordinates) moving a digit from state_i to state_j.

    states (..., 3) -> (..., 2, 3). grid_sample needs the inverse: affine_inverse(motion(...)).
    """
    r = np.stack([rotation(a) for a in (state_j[..., 2] - state_i[..., 2]).ravel()])
    r = r.reshape(state_i.shape[:-1] + (2, 2))
    t = state_j[..., :2, None] - r @ state_i[..., :2, None]
    return to_normalised(np.concatenate([r, t], axis=-1), size)


def transfer(state: np.ndarray, state_i: np.ndarray, state_j: np.ndarray) -> np.ndarray:
    """Pose of a digit at `state` after the image-space motion T^X(state_i -> state_j): the same
    rotation, about the moving digit's centre c_i, and the same translation. (..., 3) each."""
    da = state_j[..., 2] - state_i[..., 2]
    r = np.stack([rotation(a) for a in np.ravel(da)]).reshape(np.shape(da) + (2, 2))
    centre = (r @ (state[..., :2] - state_i[..., :2])[..., None])[..., 0] + state_j[..., :2]
    return np.concatenate([centre, (state[..., 2] + da)[..., None]], axis=-1)


@dataclass(frozen=True)
class Videos:
    digits: np.ndarray  # (B, N) index into the split's digits
    backgrounds: np.ndarray  # (B,) index into the split's backgrounds
    states: np.ndarray  # (B, M, N, 3) cx, cy, angle per frame and digit


class MovingMNIST:
    """Videos of `n_digits` MNIST digits moving on one of the split's fixed backgrounds."""

    def __init__(self, split: str, n_digits: int = 1, n_backgrounds: int = 64, frames: int = 5,
                 size: int = 64, seed: int = 0, data_dir: Path | None = None):
        self.split, self.n_digits, self.frames, self.size = split, n_digits, frames, size
        digits = load_mnist(split, data_dir)
        self.digits = torch.from_numpy(digits.copy()).float().div_(255).unsqueeze(1)  # (D, 1, 28, 28)
        self.ink_corners = self._ink_corners(digits)  # (D, 4, 2) relative to the patch centre
        self.backgrounds = torch.from_numpy(
            make_backgrounds(split, n_backgrounds, seed, size)).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def _ink_corners(digits: np.ndarray) -> np.ndarray:
        """Corners of each digit's tight ink box, in pixels relative to the patch centre."""
        rows, cols = digits.any(axis=2), digits.any(axis=1)
        y0, y1 = rows.argmax(1), PATCH - rows[:, ::-1].argmax(1)
        x0, x1 = cols.argmax(1), PATCH - cols[:, ::-1].argmax(1)
        corners = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1),
                            np.stack([x0, y1], 1), np.stack([x1, y1], 1)], 1)
        return corners.astype(np.float64) - PATCH / 2

    def inside(self, digit: int, state: np.ndarray) -> bool:
        """Whether the digit's ink stays on the canvas at this pose."""
        pts = self.ink_corners[digit] @ rotation(state[2]).T + state[:2]
        return bool(pts.min() >= 0 and pts.max() <= self.size)

    def random_start(self, digit: int, rng: np.random.Generator) -> np.ndarray:
        """An upright pose with all the ink on the canvas."""
        lo, hi = -self.ink_corners[digit].min(0), self.size - self.ink_corners[digit].max(0)
        return np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]), 0.0])

    def random_step(self, digit: int, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One rotation or translation that keeps the digit on the canvas (redrawn until it does)."""
        for _ in range(1000):
            new = state.copy()
            if rng.random() < 0.5:
                new[2] += ROTATIONS[rng.integers(len(ROTATIONS))]
            else:
                new[0] += TRANSLATIONS[rng.integers(len(TRANSLATIONS))]
                new[1] += TRANSLATIONS[rng.integers(len(TRANSLATIONS))]
            if self.inside(digit, new):
                return new
        raise RuntimeError(f"no valid step from {state} for digit {digit}")

    def sample_videos(self, count: int, rng: np.random.Generator,
                      digits: np.ndarray | None = None, backgrounds: np.ndarray | None = None) -> Videos:
        n = self.n_digits
        if digits is None:
            digits = rng.integers(len(self.digits), size=(count, n))
        if backgrounds is None:
            backgrounds = rng.integers(len(self.backgrounds), size=count)
        states = np.empty((count, self.frames, n, 3))
        for b in range(count):
            for k in range(n):
                d = digits[b, k]
                states[b, 0, k] = self.random_start(d, rng)
                for t in range(1, self.frames):
                    states[b, t, k] = self.random_step(d, states[b, t - 1, k], rng)
        return Videos(np.asarray(digits), np.asarray(backgrounds), states)

    def render(self, digits: np.ndarray, states: np.ndarray, backgrounds: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, S, S) in [0, 1]: digits (B, N) at states (B, N, 3) on backgrounds
        (B, 3, S, S). Digit ink blackens the background (§4.3)."""
        b, n = digits.shape
        s = self.size
        r_inv = np.stack([rotation(-a) for a in states[..., 2].ravel()])  # canvas -> patch
        centre = states[..., :2].reshape(-1, 2, 1)
        # theta maps canvas [-1, 1] coordinates to patch [-1, 1] coordinates (see module doc).
        theta = np.concatenate([r_inv * (s / PATCH), r_inv @ (s / 2 - centre) / (PATCH / 2)], -1)
        patches = self.digits[torch.from_numpy(digits.ravel())]
        grid = F.affine_grid(torch.from_numpy(theta).float(), [b * n, 1, s, s], align_corners=False)
        ink = F.grid_sample(patches, grid, align_corners=False).view(b, n, s, s)
        clear = (1 - ink).prod(dim=1, keepdim=True)  # (B, 1, S, S): 1 where no digit covers
        return backgrounds * clear

    def frames_of(self, videos: Videos) -> torch.Tensor:
        """All frames of the videos, (B, M, 3, S, S)."""
        bgs = self.backgrounds[torch.from_numpy(videos.backgrounds)]
        b, m = videos.states.shape[:2]
        digits = np.repeat(videos.digits[:, None], m, axis=1).reshape(b * m, -1)
        frames = self.render(digits, videos.states.reshape(b * m, self.n_digits, 3),
                             bgs.repeat_interleave(m, dim=0))
        return frames.view(b, m, 3, self.size, self.size)

    def sample_pairs(self, count: int, rng: np.random.Generator, max_gap: int | None = None,
                     augment: bool = False, recolour: float = 0.0):
        """Training pairs (x1, x2) of two distinct frames of one video, and T^X (B, N, 2, 3).

        max_gap bounds |i - j| (nearby frames); augment applies a random flip/rotation by 90
        degrees and channel permutation to each video's background, after redrawing its colours
        from the palette with probability `recolour` (backgrounds.recolour_backgrounds).
        """
        videos = self.sample_videos(count, rng)
        i, j = distinct_frames(self.frames, count, rng, max_gap)
        bgs = self.backgrounds[torch.from_numpy(videos.backgrounds)]
        if augment:
            bgs = augment_backgrounds(bgs, rng, recolour)
        b = np.arange(count)
        s1, s2 = videos.states[b, i], videos.states[b, j]  # (B, N, 3)
        digits = videos.digits
        x1 = self.render(digits, s1, bgs)
        x2 = self.render(digits, s2, bgs)
        return x1, x2, motion(s1, s2, self.size)


def distinct_frames(frames: int, count: int, rng: np.random.Generator,
                    max_gap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of two distinct frames, uniform over ordered pairs with |i - j| <= max_gap."""
    i = rng.integers(frames, size=count)
    j = rng.integers(frames - 1, size=count)
    j += j >= i
    if max_gap is not None:
        far = np.abs(i - j) > max_gap
        if far.any():
            i[far], j[far] = distinct_frames(frames, int(far.sum()), rng, max_gap)
    return i, j


def augment_backgrounds(bgs: torch.Tensor, rng: np.random.Generator, recolour: float = 0.0) -> torch.Tensor:
    """Random dihedral transform and RGB permutation per background: 48 variants of each, so a
    small background set is not memorised (the test backgrounds are all unseen). Before that,
    with probability `recolour`, a background's colours are redrawn (backgrounds.recolour_backgrounds)."""
    if recolour:
        bgs = recolour_backgrounds(bgs, rng, recolour)
    out = torch.empty_like(bgs)
    for k in range(len(bgs)):
        x = bgs[k][torch.from_numpy(rng.permutation(3))]
        x = torch.rot90(x, int(rng.integers(4)), dims=(1, 2))
        out[k] = x.flip(2) if rng.random() < 0.5 else x
    return out
