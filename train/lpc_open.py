"""Open LPC sprites: characters drawn at random from the whole layer set, with splits that test unseen
combinations and unseen layers.

Characters. A character is one option per attribute of OPEN_ATTRIBUTES: sex, then body, hair,
shirt, chain mail, chest, tabard, legs, arms, shoulders, bracers, gloves, feet, quiver, weapon and
shield, each option a set of layer sheets of that sex (``either_*`` sheets fit both; the female
steel wand and the male shield have no counterpart of the other sex). Every attribute but sex and
body is optional: absent with probability ABSENT[attribute], else one of the options that fit the
sex, uniformly. Bows come with their arrow; the longsword and the large spear are oversize sheets
(lpc.py's module doc). Layers are composited by lpc.DRAW_ORDER with lpc.over into lpc's frame
layout (172 frames of 64x64 RGBA), so a character made of the paper protocol's layers renders to
the same bytes as lpc.render_character.

Splits (seeded; same seed, same characters). Character k of a split is drawn from its own random
stream, default_rng([seed, split tag, k]), redrawn until it obeys the split's rule:

    train        no HELD_OUT_LAYERS, no HELD_OUT_PAIRS, not a validation character;
                 TRAIN_CHARACTERS indices, rendered on the fly
    val          as train (a disjoint set of combinations), VAL_CHARACTERS of them
    test         combinations never seen in training: each holds at least one of HELD_OUT_PAIRS
                 (two options that training sees, never together), no HELD_OUT_LAYERS
    test-layers  layers never seen in training or test: each holds one of HELD_OUT_LAYERS
                 (k-th character: the (k mod 4)-th), the rest drawn freely

HELD_OUT_PAIRS: for each attribute pair of COMBO_ATTRIBUTES, a seeded HELD_OUT_PAIR_FRACTION of its
option pairs (options by name, both sexes; absent and held-out options excluded).

Frames are rendered on the fly for each batch (the layer sheets are read once, lpc.load_layer),
so the training set never repeats a character in practice; OpenSprites is an lpc.Sprites whose
frames come from the renderer, so sample_pairs and sample_analogies work unchanged.

``python -m train.lpc_open --split test-layers --count 4 --sheet PATH`` lists a split's first
characters and writes their contact sheet (lpc.contact_sheet).
"""
from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from train import lpc
from train.backgrounds import make_backgrounds
from train.lpc import Layer

SPLITS = ("train", "val", "test", "test-layers")
TRAIN_CHARACTERS = 2 ** 31
VAL_CHARACTERS = 100
TEST_CHARACTERS = 100
SPLIT_TAGS = {"train": 11, "val": 12, "test": 13, "test-layers": 14, "pairs": 15}
BACKGROUND_SPLIT = {"train": "train", "val": "val", "test": "test", "test-layers": "test"}

BOTH = ("male", "female")


@dataclass(frozen=True)
class Option:
    """One choice of an attribute: its layers ('{sex}' filled per sex) and the sexes it fits."""
    name: str
    layers: tuple[Layer, ...]
    sexes: tuple[str, ...] = BOTH


def _sheets(slot: str, folder: str, names: Sequence[str], sexes: tuple[str, ...] = BOTH,
            suffix: str = "") -> tuple[Option, ...]:
    return tuple(Option(n, (Layer(slot, f"{folder}/{{sex}}_{n}{suffix}"),), sexes) for n in names)


HAIR = tuple(f"{style}_{colour}" for style in ("bangs", "long", "messy2", "mohawk", "ponytail", "princess")
             for colour in ("blonde", "brunette", "raven", "redhead"))
BOW = (Layer("ammo", "ammo/either_arrow"),)
# attribute -> options; the order of attributes and options is part of the recipe.
OPEN_ATTRIBUTES: dict[str, tuple[Option, ...]] = {
    "sex": tuple(Option(s, (), (s,)) for s in BOTH),
    "body": _sheets("body", "body", lpc.SKINS),
    "hair": _sheets("hair", "hair", HAIR),
    "shirt": _sheets("shirt", "torso", ("white_longsleeve", "brown_longsleeve"), ("male",))
    + _sheets("shirt", "torso", ("white_tunic", "teal_tunic"), ("female",)),
    "chainmail": _sheets("chainmail", "torso", ("chainmail",)),
    "chest": _sheets("chest", "torso", ("leather", "plate", "gold"), suffix="_chest"),
    "tabard": _sheets("tabard", "torso", ("tabard",)),
    "legs": _sheets("pants", "legs", ("magenta_pants", "red_pants", "teal_pants", "white_pants"))
    + _sheets("greaves", "legs", ("metal_greaves", "golden_greaves")),
    "arms": _sheets("arms", "arms", ("plate", "gold"), suffix="_arms"),
    "shoulders": _sheets("shoulders", "shoulders", ("leather",), suffix="_shoulders"),
    "bracers": _sheets("bracers", "hands", ("leather",), suffix="_bracers"),
    "gloves": _sheets("gloves", "hands", ("metal", "golden"), suffix="_gloves"),
    "feet": _sheets("feet", "feet", ("black_shoes", "brown_shoes", "maroon_shoes", "metal_boots",
                                     "golden_boots")),
    "quiver": (Option("quiver", (Layer("behind", "behind/either_quiver"),)),),
    "weapon": _sheets("weapon", "weapon", ("dagger", "woodwand"))
    + _sheets("weapon", "weapon", ("steelwand",), ("female",))
    + (Option("spear", (Layer("weapon", "weapon/either_spear"),)),)
    + tuple(Option(b, (Layer("weapon", f"weapon/either_{b}"),) + BOW) for b in ("bow", "greatbow", "recurvebow"))
    + (Option("longsword", (Layer("oversize", "weapon_oversize/{sex}_longsword", "slash"),)),
       Option("spear_large", (Layer("oversize", "weapon_oversize/either_spear_large", "thrust"),))),
    "shield": _sheets("shield", "shield", ("shield_cutoutforbody",), ("male",)),
}
ATTRIBUTE_NAMES = tuple(OPEN_ATTRIBUTES)
NONE = ""  # the option name of an absent optional attribute
# Probability that an optional attribute is absent; sex and body are always there.
ABSENT = {"hair": 0.1, "shirt": 0.3, "chainmail": 0.7, "chest": 0.5, "tabard": 0.7, "legs": 0.15,
          "arms": 0.6, "shoulders": 0.7, "bracers": 0.7, "gloves": 0.6, "feet": 0.2, "quiver": 0.7,
          "weapon": 0.2, "shield": 0.7}

# Layers no train, val or test character has: two hair sheets (a colour each), a torso, a weapon.
HELD_OUT_LAYERS = (("hair", "long_redhead"), ("hair", "messy2_blonde"), ("chest", "plate"),
                   ("weapon", "greatbow"))
# Attribute pairs some of whose option pairs train never sees together (the test split's novelty).
COMBO_ATTRIBUTES = (("body", "hair"), ("chest", "legs"), ("shirt", "weapon"))
HELD_OUT_PAIR_FRACTION = 0.1

Character = tuple[str, ...]  # one option name per attribute (NONE when absent), ATTRIBUTE_NAMES order


def held_out_pairs(seed: int = 0) -> frozenset[tuple[str, str, str, str]]:
    """(attribute a, option a, attribute b, option b): option pairs the train split never holds."""
    rng = np.random.default_rng([seed, SPLIT_TAGS["pairs"]])
    held = set(HELD_OUT_LAYERS)
    out = set()
    for a, b in COMBO_ATTRIBUTES:
        names = [[o.name for o in OPEN_ATTRIBUTES[n] if (n, o.name) not in held] for n in (a, b)]
        pairs = list(itertools.product(*names))
        picks = rng.choice(len(pairs), size=max(1, round(HELD_OUT_PAIR_FRACTION * len(pairs))), replace=False)
        out.update((a, pairs[k][0], b, pairs[k][1]) for k in sorted(picks))
    return frozenset(out)


def _options(attribute: str, sex: str) -> tuple[Option, ...]:
    return tuple(o for o in OPEN_ATTRIBUTES[attribute] if sex in o.sexes)


def draw_character(rng: np.random.Generator, forced: tuple[str, str] | None = None) -> Character:
    """One random character; forced: (attribute, option) it must have (an option that fits both sexes)."""
    u = rng.random(2 * len(ATTRIBUTE_NAMES))
    sex = BOTH[int(u[1] * 2)]
    out = [sex]
    for k, name in enumerate(ATTRIBUTE_NAMES[1:], 1):
        options = _options(name, sex)
        if forced is not None and forced[0] == name:
            out.append(forced[1])
        elif not options or u[2 * k] < ABSENT.get(name, 0.0):
            out.append(NONE)
        else:
            out.append(options[int(u[2 * k + 1] * len(options))].name)
    return tuple(out)


OPTIONS = {n: {o.name: o for o in options} for n, options in OPEN_ATTRIBUTES.items()}


def character_layers(character: Character) -> list[Layer]:
    """The layers of one character, bottom to top (lpc.DRAW_ORDER)."""
    sex = character[0]
    layers = [Layer(l.slot, l.path.format(sex=sex), l.animation)
              for name, choice in zip(ATTRIBUTE_NAMES, character) if choice != NONE
              for l in OPTIONS[name][choice].layers]
    return sorted(layers, key=lambda l: lpc.DRAW_ORDER.index(l.slot))


def describe(character: Character) -> str:
    return " ".join(f"{n}={c}" for n, c in zip(ATTRIBUTE_NAMES, character) if c != NONE)


def has_held_out_layer(character: Character) -> bool:
    return any(character[ATTRIBUTE_NAMES.index(a)] == o for a, o in HELD_OUT_LAYERS)


def pairs_of(character: Character) -> set[tuple[str, str, str, str]]:
    """The character's option pairs over COMBO_ATTRIBUTES."""
    return {(a, character[ATTRIBUTE_NAMES.index(a)], b, character[ATTRIBUTE_NAMES.index(b)])
            for a, b in COMBO_ATTRIBUTES}


class OpenCharacters:
    """The characters of one split, by index (same seed, same characters)."""

    def __init__(self, split: str, seed: int = 0, size: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {SPLITS}")
        full = {"train": TRAIN_CHARACTERS, "val": VAL_CHARACTERS}.get(split, TEST_CHARACTERS)
        self.split, self.seed, self.size = split, seed, min(size or full, full)
        self.pairs = held_out_pairs(seed)
        # val/test characters are drawn in order, each unlike the ones before it
        self._fixed: list[Character] = []
        if split != "train":
            seen: set[Character] = set()
            for k in range(self.size):
                c = self._draw(k, seen)
                seen.add(c)
                self._fixed.append(c)
        self._val = set() if split != "train" else set(OpenCharacters("val", seed).characters())
        self._train = lru_cache(maxsize=4096)(lambda k: self._draw(k, self._val))  # a pair reads it twice

    def _allowed(self, c: Character, exclude: set[Character]) -> bool:
        if c in exclude:
            return False
        if self.split == "test-layers":
            return True
        if has_held_out_layer(c):
            return False
        novel = bool(pairs_of(c) & self.pairs)
        return novel if self.split == "test" else not novel

    def _draw(self, k: int, exclude: set[Character]) -> Character:
        rng = np.random.default_rng([self.seed, SPLIT_TAGS[self.split], k])
        forced = HELD_OUT_LAYERS[k % len(HELD_OUT_LAYERS)] if self.split == "test-layers" else None
        while True:
            c = draw_character(rng, forced)
            if self._allowed(c, exclude):
                return c

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, k: int) -> Character:
        if not 0 <= k < self.size:
            raise IndexError(f"character {k}: the {self.split} split has {self.size}")
        return self._fixed[k] if self._fixed else self._train(int(k))

    def characters(self) -> list[Character]:
        return [self[k] for k in range(self.size)]


def render_frames(characters: Sequence[Character], frames: np.ndarray, data_dir: Path | None = None) -> np.ndarray:
    """Frame frames[b] (index into lpc's 172 stored frames) of characters[b] -> (B, 64, 64, 4) uint8 RGBA.

    All characters are composited together, one layer per draw-order slot holding the rows of the
    characters that have it (lpc.over's rows). Below an oversize weapon, its animation's frames
    lose rows 0-7, as lpc.drawn_layers does."""
    slots: dict[int, list[tuple[int, np.ndarray]]] = {}  # draw-order slot -> [(b, (64, 64, 4) frame)]
    for b, (character, f) in enumerate(zip(characters, frames)):
        for s, sheet, dropped in _drawn(character, data_dir):
            frame = sheet[f]
            if f in dropped:  # the oversize weapon is the top slot: every layer drawn so far is below it
                for below in slots.values():
                    if below[-1][0] == b:
                        below[-1] = (b, _drop_rows(below[-1][1]))
            slots.setdefault(s, []).append((b, frame))
    order = sorted(slots)
    return lpc.over([np.stack([f for _, f in slots[s]]) for s in order],
                    [np.array([b for b, _ in slots[s]]) for s in order], len(characters))


def _drop_rows(frame: np.ndarray) -> np.ndarray:
    out = frame.copy()
    out[:lpc.OVERSIZE_DROPPED_ROWS] = 0
    return out


_load_layer = lru_cache(maxsize=None)(lpc.load_layer)  # skips the data folder's look-up per call


@lru_cache(maxsize=65536)
def _drawn(character: Character, data_dir: Path | None) -> list[tuple[int, np.ndarray, range]]:
    """(draw-order slot, (172, 64, 64, 4) sheet frames, frames that drop the rows below) per layer."""
    out = []
    for layer in character_layers(character):
        sel = lpc.oversize_frames(layer.animation) if layer.animation else slice(0)
        out.append((lpc.DRAW_ORDER.index(layer.slot), _load_layer(layer.path, layer.animation, data_dir),
                    range(sel.start or 0, sel.stop)))
    return out


def render_character(character: Character, data_dir: Path | None = None) -> np.ndarray:
    """All 172 frames of one character, (172, 64, 64, 4) uint8 RGBA."""
    return render_frames([character] * lpc.N_FRAMES, np.arange(lpc.N_FRAMES), data_dir)


class OpenSprites(lpc.Sprites):
    """lpc.Sprites over one open split, its frames rendered per batch."""

    def __init__(self, characters: OpenCharacters, backgrounds: torch.Tensor | None = None,
                 canvas: Sequence[float] = lpc.WHITE, data_dir: Path | None = None):
        super().__init__(None, backgrounds, canvas)
        self.characters, self.data_dir = characters, data_dir

    @classmethod
    def load(cls, split: str, n_backgrounds: int = 0, seed: int = 0, characters: int = 0,
             canvas: Sequence[float] = lpc.WHITE, data_dir: Path | None = None) -> "OpenSprites":
        """The split (its first `characters` if > 0) with n_backgrounds diamond backgrounds (0: none),
        the fixed sets of make_backgrounds (test-layers shares the test split's)."""
        bgs = None
        if n_backgrounds:
            bgs = make_backgrounds(BACKGROUND_SPLIT[split], n_backgrounds, 0, lpc.CELL)
            bgs = torch.from_numpy(bgs).permute(0, 3, 1, 2).contiguous()
        return cls(OpenCharacters(split, seed, characters or None), bgs, canvas, data_dir)

    def __len__(self) -> int:
        return len(self.characters)

    def sequence(self, character: int, animation: str, viewpoint: str) -> np.ndarray:
        s = 4 * lpc.ANIMATIONS.index(animation) + lpc.VIEWPOINTS.index(viewpoint)
        n = int(lpc.SEQ_LENGTHS[s])
        return render_frames([self.characters[character]] * n, lpc.SEQ_STARTS[s] + np.arange(n), self.data_dir)

    def describe(self, character: int) -> str:
        return describe(self.characters[character])

    def option(self, character: int, attribute: str) -> str:
        """The character's option of an attribute, by name ('' when absent)."""
        return self.characters[character][ATTRIBUTE_NAMES.index(attribute)]

    def _frames(self, character: np.ndarray, sequence: np.ndarray, index: np.ndarray,
                background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chars = [self.characters[int(k)] for k in character]
        rgba = lpc.to_tensor(render_frames(chars, lpc.SEQ_STARTS[sequence] + index, self.data_dir))
        return lpc.composite(rgba, background), (rgba[:, 3:] > 0).float()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.lpc_open", description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--count", type=int, default=4, help="the split's first COUNT characters")
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--sheet", type=Path, help="write their contact sheet PNG")
    parser.add_argument("--data-dir", type=Path, help="the data directory holding lpc/ (train/data_dir.py)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count: got {args.count}, expected a positive number of characters")
    chars = OpenCharacters(args.split, args.seed, args.count).characters()
    for k, c in enumerate(chars):
        print(f"{args.split} {k}: {describe(c)}")
    if args.sheet:
        lpc.contact_sheet([render_character(c, args.data_dir) for c in chars], scale=1).save(args.sheet)
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
