"""The training datasets behind one interface, for train.train: pairs (x1, x2) of two frames of one
clip with the same background, and the ground-truth motion T^X where the dataset has one.

    mnist       Moving MNIST on diamond backgrounds (§4.3); T^X known
    sprites     LPC sprites on a white canvas (§4.4); no T^X (the motion is categorical)
    sprites-bg  LPC sprites on diamond backgrounds (§4.2, §4.4); no T^X
    lpc-open    open LPC characters from the whole layer set (train/lpc_open.py) on a white canvas
    lpc-open-bg the same on diamond backgrounds
    videos:DIR  the user's footage in folder DIR (train/videos.py): split by video with seed 0
                whatever the training seed, frames of size x size; no T^X

Every source has sample_pairs(count, rng, max_gap=None, augment=False, recolour=0.0) -> (x1, x2,
tx): x1, x2 (B, 3, 64, 64) in [0, 1] (size x size for videos:DIR) and tx (B, N, 2, 3) or None.
augment recolours and flips/rotates the backgrounds (moving_mnist.augment_backgrounds), after
redrawing their colours from the palette with probability recolour; it changes nothing on a plain
canvas (videos:DIR: it mirrors both frames of half the pairs).

Sprite backgrounds are the fixed sets of make_backgrounds(split, n, seed=0) whatever the training
seed (the first n of the split's stream, so 64 training backgrounds are a subset of 1000), and the
character split is lpc's fixed split: every sprites model is evaluated on the same test data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from train import lpc, lpc_open
from train.backgrounds import make_backgrounds
from train.moving_mnist import MovingMNIST
from train.videos import DEFAULT_MAX_GAP, load_videos

DATASETS = ("mnist", "sprites", "sprites-bg", "lpc-open", "lpc-open-bg")
VIDEOS = "videos:"  # + a folder of footage
VAL_BACKGROUNDS = 64  # validation backgrounds of every dataset


class PairSource(Protocol):
    def sample_pairs(self, count: int, rng: np.random.Generator, max_gap: int | None = None,
                     augment: bool = False, recolour: float = 0.0
                     ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]: ...


def load_sprites(split: str, n_backgrounds: int, characters: int = 0, canvas: Sequence[float] = lpc.WHITE,
                 data_dir: Path | None = None) -> lpc.Sprites:
    """One split of the sprites (its first `characters` only if > 0, a quick subset that builds in
    seconds when the cache is missing) with n_backgrounds diamond backgrounds (0: none)."""
    bgs = None
    if n_backgrounds:
        bgs = torch.from_numpy(make_backgrounds(split, n_backgrounds, 0, lpc.CELL)).permute(0, 3, 1, 2).contiguous()
    return lpc.Sprites(lpc.load_split(split, limit=characters or None, data_dir=data_dir), bgs, canvas=canvas)


class SpritePairs:
    """Sprites.sample_pairs reduced to the training interface: no T^X."""

    def __init__(self, sprites: lpc.Sprites, with_backgrounds: bool):
        self.sprites, self.with_backgrounds = sprites, with_backgrounds

    def sample_pairs(self, count: int, rng: np.random.Generator, max_gap: int | None = None,
                     augment: bool = False, recolour: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, None]:
        p = self.sprites.sample_pairs(count, rng, self.with_backgrounds, max_gap, augment, recolour)
        return p.x1, p.x2, None


def pair_source(dataset: str, split: str, n_backgrounds: int, seed: int = 0, characters: int = 0,
                data_dir: Path | None = None, size: int = 64, crop: Sequence[int] | None = None,
                max_gap: int = DEFAULT_MAX_GAP) -> PairSource:
    """The pairs of one split. seed: Moving MNIST's background seed; characters: the sprites
    subset (0: the whole split); data_dir: where to look for the data (train.data_dir); size,
    crop, max_gap: the frames of videos:DIR (train/videos.py; the other datasets are 64)."""
    if dataset.startswith(VIDEOS):
        return load_videos(dataset[len(VIDEOS):], size, None if crop is None else tuple(crop)).pairs(split, max_gap)
    if dataset == "mnist":
        return MovingMNIST(split, 1, n_backgrounds, seed=seed, data_dir=data_dir)
    if dataset == "sprites":
        return SpritePairs(load_sprites(split, 0, characters, data_dir=data_dir), with_backgrounds=False)
    if dataset == "sprites-bg":
        return SpritePairs(load_sprites(split, n_backgrounds, characters, data_dir=data_dir), with_backgrounds=True)
    if dataset in ("lpc-open", "lpc-open-bg"):
        bg = dataset == "lpc-open-bg"
        sprites = lpc_open.OpenSprites.load(split, n_backgrounds if bg else 0, characters=characters, data_dir=data_dir)
        return SpritePairs(sprites, with_backgrounds=bg)
    raise ValueError(f"dataset {dataset!r}: expected one of {DATASETS} or {VIDEOS}DIR")
