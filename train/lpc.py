"""The LPC sprites dataset of Reed et al. (2015), as used in §4.4, built from the layer sheets.

Characters. 672 = 2 sexes x 7 bodies x 2 arms x 2 hair x 2 armour x 2 greaves x 3 weapons, the
seven attributes of §4.4. Every option is a set of layer sheets of one sex (``either_*`` sheets fit
both); ATTRIBUTES lists them. Reed's exact item choices are not published, so these are ours:
arms = arm armour with matching gloves, armour = a shirt/tunic under a leather chest or chain mail
under a tabard, greaves = pants with shoes or metal greaves with metal boots, weapon = spear (drawn
in thrust), bow with arrow and quiver (shoot), or the oversize longsword (slash). A fixed seeded
permutation of the character ids gives 500 train / 72 validation / 100 test characters.

Layers are composited bottom to top in DRAW_ORDER, the order of the Gaurav0 generator documented in
shared/data/lpc/README.md: behind (the quiver, which the generator drew with destination-over:
under everything drawn so far, which for source-over compositing is the same as drawing it first),
body, torso (shirt, chain mail, chest, tabard), hair, pants, arms, shoulders, bracers, greaves,
gloves, feet, weapon, ammo, shield, and last the oversize weapon. Compositing is straight-alpha
Porter-Duff "over" in float32, rounded to uint8 once at the end (the browser's canvas rounded after
every layer, so the few half-transparent pixels may differ from it by rounding).

Oversize weapons. Their sheets hold 192x192 cells (4 viewpoints x 6 slash or 8 thrust frames). As
the generator did, each frame of that animation sits at offset (64, 64) of its cell with only its
pixel rows 8-63 copied (rows 0-7 are dropped; no layer used here has pixels there in those frames),
and the oversize cell is drawn on top. We keep the cell's central 64x64 window, the frame's own
position, so the blade is clipped where it swings beyond the frame (about half of the longsword's
pixels lie inside). The character itself is never clipped.

Frames. Each character has 5 animations (spellcast, thrust, walk, slash, shoot) x 4 viewpoints (up,
left, down, right) = 20 sequences of 7, 8, 9, 6 and 13 frames (the sheet's row lengths; walk frame 0
is the standing pose), 172 frames in all, stored as 64x64 RGBA uint8 in that order: sequence
s = 4 * animation + viewpoint is sheet row s, and its frames start at SEQ_STARTS[s]. The alpha
channel is the character's mask: alpha > 0 exactly where some layer has a pixel.

Crop. Reed et al. and §4.4 use 60x60 images made from these 64x64 cells; neither the paper nor the
layer README says how (a crop at unknown offsets, or a resize). We keep the full 64x64 cell at the
sheets' native pixel scale: the body reaches the cell's bottom row (row 63) in thrust, shoot and
the female walk, and weapons reach every border, so any 60x60 window cuts the character; and the
model, the diamond backgrounds and Moving MNIST all work at 64x64.

Backgrounds (§4.2, §4.4): the sprite is composited over a diamond background by its alpha; without
backgrounds it is shown on a plain canvas, white by default (Sprites(canvas=...) sets another colour,
e.g. the gray of §4.4's 'Ours-BG'). ``composite`` does this for a batch.

Cache. ``build_split`` renders one split into ``<cache_dir>/lpc-<split>-<key>.npz`` (default cache
dir ~/.cache/eqsdk/lpc), where key hashes the whole recipe (RECIPE_VERSION, attributes, draw order,
frame layout, split seed and sizes, and the md5 of every layer sheet used), so any change rebuilds.
The zip is written with fixed timestamps: the same recipe gives the same bytes.
``python -m train.lpc --out DIR`` builds all three splits.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import time
import zipfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image

from train.backgrounds import make_backgrounds
from train.data_dir import find_data
from train.moving_mnist import augment_backgrounds

DEFAULT_CACHE = Path("~/.cache/eqsdk/lpc")
RECIPE_VERSION = 1

# Sheet layout (README): 13 columns x 21 rows of 64x64 cells; four rows per animation, one per viewpoint.
CELL = 64
SHEET_SIZE = (13 * CELL, 21 * CELL)  # PIL (width, height)
ANIMATIONS = ("spellcast", "thrust", "walk", "slash", "shoot")
VIEWPOINTS = ("up", "left", "down", "right")
FRAMES_PER_ANIMATION = (7, 8, 9, 6, 13)
SEQ_LENGTHS = np.repeat(FRAMES_PER_ANIMATION, len(VIEWPOINTS))  # (20,): sequence s is sheet row s
SEQ_STARTS = np.concatenate([[0], np.cumsum(SEQ_LENGTHS)[:-1]])  # (20,) first stored frame of each
N_SEQUENCES = len(SEQ_LENGTHS)
N_FRAMES = int(SEQ_LENGTHS.sum())  # 172 frames per character
FRAME_ROW = np.repeat(np.arange(N_SEQUENCES), SEQ_LENGTHS)  # (172,) sheet row of each stored frame
FRAME_COL = np.concatenate([np.arange(n) for n in SEQ_LENGTHS])  # (172,) sheet column
OVERSIZE_CELL = 192
OVERSIZE_DROPPED_ROWS = 8  # the generator copied only rows 8-63 of a frame into an oversize cell

SPLIT_SIZES = {"train": 500, "val": 72, "test": 100}
DEFAULT_BACKGROUNDS = {"train": 64, "val": 64, "test": 100}  # §4.2: B = 100 for test


@dataclass(frozen=True)
class Layer:
    """One sheet of a character: its draw-order slot and path under the lpc data folder without '.png', with
    '{sex}' and '{shirt}' filled in per sex. animation: for an oversize sheet, the one it draws."""
    slot: str
    path: str
    animation: str = ""


# Bottom to top (README "Draw order"); "behind" is the generator's destination-over layer.
DRAW_ORDER = ("behind", "body", "shirt", "chainmail", "chest", "tabard", "hair", "pants", "arms",
              "shoulders", "bracers", "greaves", "gloves", "feet", "weapon", "ammo", "shield",
              "oversize")

SEXES = ("male", "female")
SHIRT = {"male": "white_longsleeve", "female": "white_tunic"}
SKINS = ("light", "tanned", "tanned2", "dark", "dark2", "darkelf", "darkelf2")
# attribute -> option -> layers; the order of attributes and options defines character ids.
ATTRIBUTES: dict[str, dict[str, tuple[Layer, ...]]] = {
    "sex": {sex: () for sex in SEXES},
    "body": {skin: (Layer("body", f"body/{{sex}}_{skin}"),) for skin in SKINS},
    "arms": {
        "plate": (Layer("arms", "arms/{sex}_plate_arms"), Layer("gloves", "hands/{sex}_metal_gloves")),
        "gold": (Layer("arms", "arms/{sex}_gold_arms"), Layer("gloves", "hands/{sex}_golden_gloves")),
    },
    "hair": {
        "ponytail_blonde": (Layer("hair", "hair/{sex}_ponytail_blonde"),),
        "messy2_raven": (Layer("hair", "hair/{sex}_messy2_raven"),),
    },
    "armour": {
        "leather": (Layer("shirt", "torso/{sex}_{shirt}"), Layer("chest", "torso/{sex}_leather_chest")),
        "chain": (Layer("chainmail", "torso/{sex}_chainmail"), Layer("tabard", "torso/{sex}_tabard")),
    },
    "greaves": {
        "pants": (Layer("pants", "legs/{sex}_teal_pants"), Layer("feet", "feet/{sex}_brown_shoes")),
        "metal": (Layer("greaves", "legs/{sex}_metal_greaves"), Layer("feet", "feet/{sex}_metal_boots")),
    },
    "weapon": {
        "spear": (Layer("weapon", "weapon/either_spear"),),
        "bow": (Layer("behind", "behind/either_quiver"), Layer("weapon", "weapon/either_bow"),
                Layer("ammo", "ammo/either_arrow")),
        "longsword": (Layer("oversize", "weapon_oversize/{sex}_longsword", "slash"),),
    },
}
ATTRIBUTE_NAMES = tuple(ATTRIBUTES)
OPTION_NAMES = {name: tuple(options) for name, options in ATTRIBUTES.items()}


class LPCDataError(ValueError):
    """A layer sheet or cache file is not what the recipe expects."""


def all_characters() -> np.ndarray:
    """Every character as option indices, (672, 7) in ATTRIBUTE_NAMES order; row = character id."""
    return np.array(list(itertools.product(*(range(len(o)) for o in ATTRIBUTES.values()))), np.int64)


def split_ids(seed: int = 0) -> dict[str, np.ndarray]:
    """The fixed split: character ids (sorted) of train / val / test, from a seeded permutation."""
    order = np.random.default_rng([seed, sum(map(ord, "lpc-split"))]).permutation(len(all_characters()))
    bounds = np.cumsum([0] + list(SPLIT_SIZES.values()))
    return {s: np.sort(order[a:b]) for s, a, b in zip(SPLIT_SIZES, bounds[:-1], bounds[1:])}


def character_layers(attributes: Sequence[int]) -> list[Layer]:
    """The layers of one character (option indices, ATTRIBUTE_NAMES order), bottom to top."""
    sex = SEXES[attributes[0]]
    layers = [Layer(l.slot, l.path.format(sex=sex, shirt=SHIRT[sex]), l.animation)
              for name, k in zip(ATTRIBUTE_NAMES, attributes)
              for l in ATTRIBUTES[name][OPTION_NAMES[name][k]]]
    return sorted(layers, key=lambda l: DRAW_ORDER.index(l.slot))  # stable within a slot


def describe(attributes: Sequence[int]) -> str:
    return " ".join(OPTION_NAMES[n][k] for n, k in zip(ATTRIBUTE_NAMES, attributes))


def load_layer(path: str, animation: str = "", data_dir: Path | None = None) -> np.ndarray:
    """One sheet as the character's 172 frames, (172, 64, 64, 4) uint8 RGBA (read-only).

    An oversize sheet (animation given) fills only that animation's frames with the central 64x64
    window of its 192x192 cells; its other frames are transparent.
    """
    return _read_sheet(find_data("lpc", data_dir) / f"{path}.png", animation)


@lru_cache(maxsize=None)
def _read_sheet(file: Path, animation: str) -> np.ndarray:
    with Image.open(file) as im:
        sheet = np.asarray(im.convert("RGBA"))
        size = im.size
    frames = np.zeros((N_FRAMES, CELL, CELL, 4), np.uint8)
    if not animation:
        if size != SHEET_SIZE:
            raise LPCDataError(f"{file}: got {size[0]}x{size[1]} px, expected {SHEET_SIZE[0]}x{SHEET_SIZE[1]}")
        cells = sheet.reshape(21, CELL, 13, CELL, 4).transpose(0, 2, 1, 3, 4)  # (row, col, 64, 64, 4)
        frames[:] = cells[FRAME_ROW, FRAME_COL]
    else:
        a = ANIMATIONS.index(animation)
        n = FRAMES_PER_ANIMATION[a]
        expected = (n * OVERSIZE_CELL, len(VIEWPOINTS) * OVERSIZE_CELL)
        if size != expected:
            raise LPCDataError(f"{file}: got {size[0]}x{size[1]} px, expected {expected[0]}x{expected[1]} "
                               f"(4 rows of {n} {OVERSIZE_CELL}-px cells for {animation})")
        cells = sheet.reshape(4, OVERSIZE_CELL, n, OVERSIZE_CELL, 4).transpose(0, 2, 1, 3, 4)
        window = cells[:, :, CELL:2 * CELL, CELL:2 * CELL]  # (4, n, 64, 64, 4): the frame's position
        first = SEQ_STARTS[4 * a]
        frames[first:first + 4 * n] = window.reshape(4 * n, CELL, CELL, 4)
    frames.flags.writeable = False
    return frames


def oversize_frames(animation: str) -> slice:
    """Stored-frame indices of one animation (all four viewpoints)."""
    a = ANIMATIONS.index(animation)
    first = SEQ_STARTS[4 * a]
    return slice(first, first + 4 * FRAMES_PER_ANIMATION[a])


def drawn_layers(attributes: Sequence[int], data_dir: Path | None = None) -> list[tuple[Layer, np.ndarray]]:
    """The layers as drawn, bottom to top, each (172, 64, 64, 4) uint8. Below an oversize layer, the
    frames of its animation lose rows 0-7 (the generator's cell copy, module doc)."""
    out = []
    for layer in character_layers(attributes):
        out.append((layer, load_layer(layer.path, layer.animation, data_dir)))
        if layer.animation:
            sel = oversize_frames(layer.animation)
            for k, (below, frames) in enumerate(out[:-1]):
                if frames[sel, :OVERSIZE_DROPPED_ROWS, :, 3].any():
                    frames = frames.copy()
                    frames[sel, :OVERSIZE_DROPPED_ROWS] = 0
                    out[k] = (below, frames)
    return out


def over(layers: Sequence[np.ndarray], rows: Sequence[np.ndarray] | None = None, count: int = 0) -> np.ndarray:
    """Straight-alpha 'over' of (..., 4) uint8 RGBA layers, bottom first -> (..., 4) uint8.

    rows: per layer, the indices (out of count) along the first axis that it covers: layers[k]
    holds only those rows and is transparent elsewhere, which gives exactly the bytes of the full
    layer (a transparent pixel changes nothing) for less work."""
    shape = layers[0].shape if rows is None else (count,) + layers[0].shape[1:]
    premul = np.zeros(shape[:-1] + (3,), np.float32)  # colour x alpha
    alpha = np.zeros(shape[:-1] + (1,), np.float32)
    for k, layer in enumerate(layers):
        a = layer[..., 3:].astype(np.float32) / 255
        keep = 1 - a
        if rows is None:
            premul *= keep
            premul += layer[..., :3].astype(np.float32) * (a / 255)
            alpha *= keep
            alpha += a
        else:
            r = rows[k]
            premul[r] = premul[r] * keep + layer[..., :3].astype(np.float32) * (a / 255)
            alpha[r] = alpha[r] * keep + a
    rgb = np.divide(premul, alpha, out=np.zeros_like(premul), where=alpha > 0)
    return np.rint(np.concatenate([rgb, alpha], -1) * 255).clip(0, 255).astype(np.uint8)


def render_character(attributes: Sequence[int], data_dir: Path | None = None) -> np.ndarray:
    """All 172 frames of one character, (172, 64, 64, 4) uint8 RGBA."""
    return over([frames for _, frames in drawn_layers(attributes, data_dir)])


# ---------------------------------------------------------------------------------------------
# Cache


def recipe(seed: int = 0, data_dir: Path | None = None) -> dict:
    """Everything the frames depend on; its hash keys the cache."""
    paths = sorted({(l.path, l.animation) for c in all_characters() for l in character_layers(c)})
    sheets = find_data("lpc", data_dir)
    return {
        "version": RECIPE_VERSION, "cell": CELL, "seq_lengths": SEQ_LENGTHS.tolist(),
        "draw_order": DRAW_ORDER, "shirt": SHIRT,
        "attributes": {n: {o: [asdict(l) for l in ls] for o, ls in opts.items()} for n, opts in ATTRIBUTES.items()},
        "split": {"seed": seed, "sizes": SPLIT_SIZES},
        "sheets": {p: hashlib.md5((sheets / f"{p}.png").read_bytes()).hexdigest() for p, _ in paths},
    }


def recipe_key(seed: int = 0, data_dir: Path | None = None) -> str:
    return hashlib.sha256(json.dumps(recipe(seed, data_dir), sort_keys=True).encode()).hexdigest()[:12]


def cache_path(split: str, cache_dir: Path | str | None = None, seed: int = 0, limit: int | None = None,
               data_dir: Path | None = None) -> Path:
    if split not in SPLIT_SIZES:
        raise ValueError(f"split {split!r}: expected one of {tuple(SPLIT_SIZES)}")
    root = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE).expanduser()
    part = "" if limit is None else f"-first{limit}"
    return root / f"lpc-{split}{part}-{recipe_key(seed, data_dir)}.npz"


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed zip timestamps, so equal arrays give equal bytes."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue(), compresslevel=6)
    tmp.replace(path)


@dataclass(frozen=True)
class SpriteSplit:
    """The rendered characters of one split."""
    frames: np.ndarray  # (C, 172, 64, 64, 4) uint8 RGBA; alpha is the mask
    attributes: np.ndarray  # (C, 7) option indices, ATTRIBUTE_NAMES order
    ids: np.ndarray  # (C,) character ids (rows of all_characters())

    def __post_init__(self):
        c = len(self.ids)
        if self.frames.shape != (c, N_FRAMES, CELL, CELL, 4) or self.frames.dtype != np.uint8:
            raise LPCDataError(f"frames: got {self.frames.shape} {self.frames.dtype}, "
                               f"expected ({c}, {N_FRAMES}, {CELL}, {CELL}, 4) uint8")
        if self.attributes.shape != (c, len(ATTRIBUTE_NAMES)):
            raise LPCDataError(f"attributes: got {self.attributes.shape}, expected ({c}, {len(ATTRIBUTE_NAMES)})")

    def sequence(self, character: int, animation: int | str, viewpoint: int | str) -> np.ndarray:
        """(n, 64, 64, 4) frames of one sequence (character: row in this split)."""
        a = ANIMATIONS.index(animation) if isinstance(animation, str) else animation
        v = VIEWPOINTS.index(viewpoint) if isinstance(viewpoint, str) else viewpoint
        s = 4 * a + v
        return self.frames[character, SEQ_STARTS[s]:SEQ_STARTS[s] + SEQ_LENGTHS[s]]


def build_split(split: str, cache_dir: Path | str | None = None, seed: int = 0, limit: int | None = None,
                data_dir: Path | None = None, force: bool = False) -> Path:
    """Render one split (its first `limit` characters if given) to the cache; returns the file."""
    path = cache_path(split, cache_dir, seed, limit, data_dir)
    if path.exists() and not force:
        return path
    ids = split_ids(seed)[split][:limit]
    attributes = all_characters()[ids]
    frames = np.empty((len(ids), N_FRAMES, CELL, CELL, 4), np.uint8)
    for k, attrs in enumerate(attributes):
        frames[k] = render_character(attrs, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_npz(path, {"frames": frames, "attributes": attributes, "ids": ids})
    return path


def load_split(split: str, cache_dir: Path | str | None = None, seed: int = 0, limit: int | None = None,
               data_dir: Path | None = None, build: bool = True) -> SpriteSplit:
    """The split from the cache, rendering it first if missing (and build)."""
    path = cache_path(split, cache_dir, seed, limit, data_dir)
    if not path.exists():
        if not build:
            raise FileNotFoundError(f"{path}: not built; run python -m train.lpc --out {path.parent}")
        build_split(split, cache_dir, seed, limit, data_dir)
    with np.load(path) as z:
        return SpriteSplit(z["frames"], z["attributes"], z["ids"])


# ---------------------------------------------------------------------------------------------
# Compositing and sampling

WHITE = (1.0, 1.0, 1.0)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(B, 64, 64, 4) uint8 RGBA -> (B, 4, 64, 64) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)


def composite(rgba: torch.Tensor, background: torch.Tensor | Sequence[float] = WHITE) -> torch.Tensor:
    """Sprites over backgrounds by their alpha: (B, 4, H, W) straight-alpha RGBA in [0, 1] over
    (B, 3, H, W) backgrounds, or one RGB colour -> (B, 3, H, W) in [0, 1]."""
    if rgba.ndim != 4 or rgba.shape[1] != 4:
        raise ValueError(f"rgba: got {tuple(rgba.shape)}, expected (B, 4, H, W)")
    b, _, h, w = rgba.shape
    if not isinstance(background, torch.Tensor):
        if len(background) != 3:
            raise ValueError(f"background colour: got {background!r}, expected 3 values (RGB)")
        background = torch.tensor(background, dtype=rgba.dtype).view(1, 3, 1, 1)
    elif background.ndim != 4 or background.shape[1] != 3 or background.shape[0] not in (1, b) \
            or tuple(background.shape[2:]) not in ((h, w), (1, 1)):
        raise ValueError(f"background: got {tuple(background.shape)}, expected ({b}, 3, {h}, {w}) or an RGB colour")
    alpha = rgba[:, 3:]
    return rgba[:, :3] * alpha + background.to(rgba) * (1 - alpha)


class Pairs(NamedTuple):
    x1: torch.Tensor  # (B, 3, 64, 64) frame i in [0, 1]
    x2: torch.Tensor  # (B, 3, 64, 64) frame j of the same sequence, same background
    m1: torch.Tensor  # (B, 1, 64, 64) 1 where the character is (alpha > 0)
    m2: torch.Tensor
    character: np.ndarray  # (B,) row in the split
    sequence: np.ndarray  # (B,) 4 * animation + viewpoint
    i: np.ndarray  # (B,) frame indices within the sequence
    j: np.ndarray
    background: np.ndarray  # (B,) background index, -1 on the plain canvas


class Analogies(NamedTuple):
    """a1 : a2 :: b1 : b2: two characters' frames i and j of the same sequence (§4.4)."""
    a1: torch.Tensor  # (B, 3, 64, 64)
    a2: torch.Tensor
    b1: torch.Tensor
    b2: torch.Tensor  # the ground truth of the analogy
    masks: torch.Tensor  # (B, 4, 1, 64, 64) of a1, a2, b1, b2 (alpha > 0)
    animation: torch.Tensor  # (B,) long, index into ANIMATIONS
    viewpoint: np.ndarray  # (B,)
    i: np.ndarray
    j: np.ndarray
    character_a: np.ndarray  # (B,) rows in the split, always different
    character_b: np.ndarray
    background_a: np.ndarray  # (B,) -1 on the plain canvas
    background_b: np.ndarray


def frame_pairs(lengths: np.ndarray, rng: np.random.Generator,
                max_gap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two distinct frame indices per sequence of the given lengths, uniform over ordered pairs
    with |i - j| <= max_gap."""
    lengths = np.asarray(lengths)
    i = rng.integers(0, lengths)
    j = rng.integers(0, lengths - 1)
    j += j >= i
    if max_gap is not None:
        far = np.abs(i - j) > max_gap
        if far.any():
            i[far], j[far] = frame_pairs(lengths[far], rng, max_gap)
    return i, j


class Sprites:
    """Training pairs and analogy tests on one split, on white or on the split's diamond backgrounds.

    data: the split's frames (load_split); backgrounds: (N, 3, 64, 64) in [0, 1] or None.
    """

    def __init__(self, data: SpriteSplit, backgrounds: torch.Tensor | None = None,
                 canvas: Sequence[float] = WHITE):
        self.data, self.canvas = data, tuple(canvas)
        if backgrounds is not None and (backgrounds.ndim != 4 or tuple(backgrounds.shape[1:]) != (3, CELL, CELL)):
            raise ValueError(f"backgrounds: got {tuple(backgrounds.shape)}, expected (N, 3, {CELL}, {CELL})")
        self.backgrounds = backgrounds

    @classmethod
    def load(cls, split: str, n_backgrounds: int | None = None, seed: int = 0,
             cache_dir: Path | str | None = None, background_seed: int = 0, **kwargs) -> "Sprites":
        """The split from the cache with n_backgrounds (default 64, 100 for test; 0: none)."""
        n = DEFAULT_BACKGROUNDS[split] if n_backgrounds is None else n_backgrounds
        bgs = None
        if n:
            bgs = torch.from_numpy(make_backgrounds(split, n, background_seed, CELL)).permute(0, 3, 1, 2).contiguous()
        return cls(load_split(split, cache_dir, seed), bgs, **kwargs)

    def __len__(self) -> int:
        return len(self.data.ids)

    def sequence(self, character: int, animation: str, viewpoint: str) -> np.ndarray:
        """(n, 64, 64, 4) RGBA frames of one sequence of one character of the split."""
        return self.data.sequence(character, animation, viewpoint)

    def describe(self, character: int) -> str:
        return describe(self.data.attributes[character])

    def option(self, character: int, attribute: str) -> str:
        """The character's option of an attribute, by name."""
        return OPTION_NAMES[attribute][self.data.attributes[character, ATTRIBUTE_NAMES.index(attribute)]]

    def _draw_backgrounds(self, count: int, rng: np.random.Generator, with_backgrounds: bool):
        if not with_backgrounds:
            return np.full(count, -1), torch.tensor(self.canvas).view(1, 3, 1, 1)
        if self.backgrounds is None:
            raise ValueError("with_backgrounds=True but this dataset has no backgrounds (n_backgrounds=0)")
        idx = rng.integers(len(self.backgrounds), size=count)
        return idx, self.backgrounds[torch.from_numpy(idx)]

    def _frames(self, character: np.ndarray, sequence: np.ndarray, index: np.ndarray,
                background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgba = to_tensor(self.data.frames[character, SEQ_STARTS[sequence] + index])  # (B, 4, 64, 64)
        return composite(rgba, background), (rgba[:, 3:] > 0).float()

    def sample_pairs(self, count: int, rng: np.random.Generator, with_backgrounds: bool = True,
                     max_gap: int | None = None, augment: bool = False, recolour: float = 0.0) -> Pairs:
        """Training pairs: two distinct frames of one random (character, animation, viewpoint)
        sequence (§4.4), on one random background (or the plain canvas). max_gap bounds |i - j|;
        augment flips/rotates/recolours each background (moving_mnist.augment_backgrounds), after
        redrawing its colours with probability `recolour` (backgrounds.recolour_backgrounds)."""
        character = rng.integers(len(self), size=count)
        sequence = rng.integers(N_SEQUENCES, size=count)
        i, j = frame_pairs(SEQ_LENGTHS[sequence], rng, max_gap)
        bg_idx, bgs = self._draw_backgrounds(count, rng, with_backgrounds)
        if augment and with_backgrounds:
            bgs = augment_backgrounds(bgs, rng, recolour)
        x1, m1 = self._frames(character, sequence, i, bgs)
        x2, m2 = self._frames(character, sequence, j, bgs)
        return Pairs(x1, x2, m1, m2, character, sequence, i, j, bg_idx)

    def sample_analogies(self, count: int, rng: np.random.Generator, with_backgrounds: bool = True,
                         same_background: bool = False) -> Analogies:
        """The §4.4 analogy test: characters A != B, one animation and viewpoint, frames i != j;
        predict B_j from (A_i, A_j, B_i). Each character gets its own random background unless
        same_background."""
        if len(self) < 2:
            raise ValueError(f"analogies need two characters, the split has {len(self)}")
        ca = rng.integers(len(self), size=count)
        cb = rng.integers(len(self) - 1, size=count)
        cb += cb >= ca
        sequence = rng.integers(N_SEQUENCES, size=count)
        i, j = frame_pairs(SEQ_LENGTHS[sequence], rng)
        bg_a, bgs_a = self._draw_backgrounds(count, rng, with_backgrounds)
        bg_b, bgs_b = (bg_a, bgs_a) if same_background else self._draw_backgrounds(count, rng, with_backgrounds)
        a1, ma1 = self._frames(ca, sequence, i, bgs_a)
        a2, ma2 = self._frames(ca, sequence, j, bgs_a)
        b1, mb1 = self._frames(cb, sequence, i, bgs_b)
        b2, mb2 = self._frames(cb, sequence, j, bgs_b)
        return Analogies(a1, a2, b1, b2, torch.stack([ma1, ma2, mb1, mb2], 1),
                         torch.from_numpy(sequence // 4), sequence % 4, i, j, ca, cb, bg_a, bg_b)


# ---------------------------------------------------------------------------------------------
# Eyeballing and the CLI


def contact_sheet(characters: Sequence[np.ndarray], background: np.ndarray | Sequence[float] = WHITE,
                  scale: int = 2, gap: int = 8) -> Image.Image:
    """One block per character, side by side: 20 rows (animation-major, viewpoints up, left, down,
    right) x 13 columns of frames. characters: (172, 64, 64, 4) uint8 each; background: a colour or
    (64, 64, 3) float image behind every frame."""
    bg = np.broadcast_to(np.asarray(background, np.float32), (CELL, CELL, 3))
    block_w = 13 * CELL + gap
    sheet = np.full((N_SEQUENCES * CELL, len(characters) * block_w - gap, 3), 0.5, np.float32)
    for k, frames in enumerate(characters):
        rgba = frames.astype(np.float32) / 255
        shown = rgba[..., :3] * rgba[..., 3:] + bg * (1 - rgba[..., 3:])
        for f in range(N_FRAMES):
            y, x = FRAME_ROW[f] * CELL, k * block_w + FRAME_COL[f] * CELL
            sheet[y:y + CELL, x:x + CELL] = shown[f]
    image = Image.fromarray(np.rint(sheet * 255).astype(np.uint8))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def write_contact_sheet(path: Path | str, attributes: Sequence[Sequence[int]], data_dir: Path | None = None,
                        **kwargs) -> Path:
    """Render the given characters (option indices) and write their contact sheet PNG."""
    contact_sheet([render_character(a, data_dir) for a in attributes], **kwargs).save(path)
    return Path(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.lpc", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CACHE, help="cache directory (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--splits", nargs="+", default=list(SPLIT_SIZES), choices=list(SPLIT_SIZES))
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache file exists")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet PNG of a few test characters")
    parser.add_argument("--data-dir", type=Path, help="the data directory holding lpc/ (train/data_dir.py)")
    args = parser.parse_args(argv)
    for split in args.splits:
        start = time.perf_counter()
        cached = cache_path(split, args.out, args.seed, data_dir=args.data_dir).exists() and not args.force
        path = build_split(split, args.out, args.seed, data_dir=args.data_dir, force=args.force)
        n = len(split_ids(args.seed)[split])
        raw = n * N_FRAMES * CELL * CELL * 4
        took = "already built" if cached else f"built in {time.perf_counter() - start:.1f} s"
        print(f"{split}: {n} characters, {n * N_FRAMES} frames -> {path} "
              f"({path.stat().st_size / 2**20:.1f} MiB, {raw / 2**20:.0f} MiB in memory), {took}")
    if args.sheet:
        chars = all_characters()
        test = split_ids(args.seed)["test"]
        # one test character per weapon and sex, so every weapon's layering is on the sheet
        picks = []
        for w in range(len(OPTION_NAMES["weapon"])):
            for s in range(len(SEXES)):
                match = [c for c in test if chars[c, 0] == s and chars[c, -1] == w]
                picks.append(match[(7 * len(picks)) % len(match)])  # spread over bodies and outfits
        write_contact_sheet(args.sheet, chars[picks], args.data_dir, scale=1)
        print(f"contact sheet: {args.sheet} ({', '.join(describe(chars[c]) for c in picks)})")


if __name__ == "__main__":
    main()
