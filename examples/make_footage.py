"""Write a demonstration footage set: open-LPC characters walking, casting and shooting over real
photographs, as MP4 clips for `eqsdk train`.

    python -m examples.make_footage --out DIR [--clips 30] [--size 128] [--seed 0] [--cell-fraction 0.5]
    eqsdk train DIR/train --out runs/footage --size 64

Layout of DIR (written beside DIR first and renamed onto it, so an interrupted run leaves no DIR):
  train/     clips of characters of train/lpc_open.py's train split (the folder to train on)
  held-out/  clips of characters of its test and test-layers splits (combinations and layers
             training never sees), for evaluation and previews: a fifth of the clips, at least one
  manifest.json, README.md  one entry per clip: file, split, character (lpc_open.describe), its
             split and index, animation, viewpoint, photograph (name, licence, source, crop), frames

Clips. Each clip is one still camera: a square crop (side 1/2 to all of the photograph's shorter
side, anywhere in it) of one PHOTOS photograph, resized to size x size (LANCZOS), the same for the
whole clip. One character is pasted over it (alpha), its 64x64 LPC cell scaled by nearest
neighbour to cell_fraction x size (default 1/2: a 64 px cell, natural LPC pixels, in a 128 px
frame; the figure is about 48/64 of the cell, so 3/8 of the frame tall, its feet on a ground line
78-95% down the frame). train/videos.py centre-crops a frame square (the whole frame here) and
resizes it to the model size, so at --size 64 the figure is about 24 px tall, at 128 about 48.
The clip's animation, in turn per character (CLIPS_PER_CHARACTER: each character on different
photographs):
  walk       viewpoint left or right: cycle frames 1-8 of the walk row while the character crosses
             the frame in the direction it faces, at 1.6-2.4 px of a 64 px cell per frame, its
             figure inside the frame from start to end (so the clip is about 3-4.5 s long)
  spellcast  standing at a random place, any of the four viewpoints: the 7 frames, each cast
             between a hold at rest (2-6 frames) and a hold of its last frame (2-4), for 3-5 s
  shoot      as spellcast with the 13 frames of the shoot row (with or without a bow)
Then, per frame: a global gain drifting linearly by 3-6% over the clip (slow lighting change),
Gaussian sensor noise of NOISE_SIGMA / 255 per pixel and channel, and rounding to uint8. Written
with PyAV: H.264 (libx264), yuv420p, FPS frames per second, CRF (mild compression).

Every random choice comes from the seed; the open data set's splits use their own fixed seed
(LPC_SPLIT_SEED), so --seed picks which characters and photographs, never what the splits hold.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from eqsdk.errors import EqsdkError, InputError
from train import lpc
from train import lpc_open as lo
from train.data_dir import find_data

FPS = 12
CRF = 23  # libx264's default quality: mild compression
NOISE_SIGMA = 2.0  # of 255: sensor noise per pixel and channel
GAIN_DRIFT = (0.03, 0.06)  # total change of the global gain over a clip, either sign
STAND_SECONDS = (3.0, 5.0)
WALK_SPEED = (1.6, 2.4)  # px of a 64 px cell per frame
CELL_FRACTION = 0.5  # the 64x64 LPC cell's side over the frame's side
HELD_OUT_FRACTION = 0.2  # of the clips; at least one when there are two clips or more
ANIMATIONS = ("walk", "spellcast", "shoot")
CLIPS_PER_CHARACTER = len(ANIMATIONS)  # clip j of a character plays ANIMATIONS[j]
HELD_OUT_SPLITS = ("test", "test-layers")  # held-out characters alternate between them
LPC_SPLIT_SEED = 0  # the open data set's own splits
INSTALL_HINT = 'pip install "eqsdk[demo]"'
MAX_SIZE = 1024

# Photographs bundled in scikit-image's wheel (skimage.data; no download), each with the licence
# statement of its skimage.data docstring (LICENSES/skimage-data.md). The grey ones become grey RGB.
PHOTOS = {
    "astronaut": ("No known copyright restrictions, released into the public domain.",
                  "NASA Great Images database, https://flic.kr/p/r9qvLn (Eileen Collins)"),
    "chelsea": ("No copyright restrictions. CC0 by the photographer (Stefan van der Walt).",
                "skimage.data.chelsea (Chelsea the cat)"),
    "coffee": ("No copyright restrictions. CC0 by the photographer (Rachel Michetti).",
               "skimage.data.coffee (courtesy of Pikolo Espresso Bar)"),
    "rocket": ("The image was captured by SpaceX and released in the public domain.",
               "SpaceX Photos, https://www.flickr.com/photos/spacexphotos/16511594820/ (DSCOVR on Falcon 9)"),
    "camera": ("No copyright restrictions. CC0 by the photographer (Lav Varshney).",
               "skimage.data.camera (grey)"),
    "brick": ("Licensed under the Creative Commons CC0 License.",
              "CC0Textures, https://cc0textures.com/view.php?tex=Bricks25 (grey, perspective-corrected)"),
    "grass": ("Licensed under the Creative Commons CC0 License.",
              "DeviantArt, https://www.deviantart.com/linolafett/art/Grass-01-434853879 (grey crop)"),
    "gravel": ("Licensed under the Creative Commons CC0 License.",
               "CC0Textures, https://cc0textures.com/view.php?tex=Gravel04 (grey crop)"),
}


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about one clip, drawn before anything is rendered."""
    file: str  # relative to DIR
    split: str  # "train" or "held-out"
    character_split: str  # the lpc_open split the character comes from
    character_index: int
    character: str  # lpc_open.describe
    animation: str
    viewpoint: str
    photo: str
    crop: tuple[int, int, int, int]  # x, y, w, h in the photograph's pixels
    length: int  # frames of a standing clip; a walk lasts as long as its crossing
    gain: tuple[float, float]  # global gain at the first and the last frame
    seed: int  # of the clip's own stream (poses, noise)


def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 photograph from skimage.data (bundled in its wheel)."""
    try:
        from skimage import data
    except ImportError:
        raise EqsdkError(f"the demonstration footage needs scikit-image's photographs: {INSTALL_HINT}") from None
    try:
        image = np.asarray(getattr(data, name)())
    except Exception as e:  # noqa: BLE001 - an older scikit-image without the file, or one that would download it
        raise EqsdkError(f"skimage.data.{name}: cannot load ({type(e).__name__}: {e}); expected a scikit-image "
                         f"whose wheel bundles it ({INSTALL_HINT})") from None
    return np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]


@lru_cache(maxsize=None)
def open_characters(split: str) -> lo.OpenCharacters:
    """The open data set's characters of a split (the train split's index runs over all of them)."""
    return lo.OpenCharacters(split, LPC_SPLIT_SEED)


def split_counts(clips: int) -> tuple[int, int]:
    """(train clips, held-out clips)."""
    held = max(1, round(HELD_OUT_FRACTION * clips)) if clips >= 2 else 0
    return clips - held, held


def plan_clips(clips: int, seed: int, photo_sizes: dict[str, tuple[int, int]]) -> list[ClipPlan]:
    """The clips of a set, train first; photo_sizes: name -> (H, W)."""
    rng = np.random.default_rng([seed, 0])
    n_train, n_held = split_counts(clips)
    groups = []  # (set split, character split, character index, clip count)
    train_ids = rng.choice(lo.TRAIN_CHARACTERS, -(-n_train // CLIPS_PER_CHARACTER), replace=False)
    for k, idx in enumerate(train_ids):
        groups.append(("train", "train", int(idx), min(CLIPS_PER_CHARACTER, n_train - k * CLIPS_PER_CHARACTER)))
    held_ids = rng.permutation(lo.TEST_CHARACTERS)
    for k in range(-(-n_held // CLIPS_PER_CHARACTER)):
        groups.append(("held-out", HELD_OUT_SPLITS[k % 2], int(held_ids[k]),
                       min(CLIPS_PER_CHARACTER, n_held - k * CLIPS_PER_CHARACTER)))
    names = list(PHOTOS)
    plans, count = [], {"train": 0, "held-out": 0}
    for set_split, char_split, idx, n in groups:
        character = lo.describe(open_characters(char_split)[idx])
        photos = rng.permutation(len(names))  # each clip of a character on another photograph
        for j in range(n):
            animation, photo = ANIMATIONS[j], names[photos[j % len(names)]]
            viewpoint = str(rng.choice(("left", "right") if animation == "walk" else lpc.VIEWPOINTS))
            h, w = photo_sizes[photo]
            side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
            crop = (int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1)), side, side)
            drift = float(rng.uniform(*GAIN_DRIFT) * rng.choice((-1, 1)))
            start = float(rng.uniform(0.97, 1.03))
            length = int(rng.integers(round(STAND_SECONDS[0] * FPS), round(STAND_SECONDS[1] * FPS) + 1))
            file = f"{set_split}/{count[set_split]:03d}-{animation}-{viewpoint}-{photo}.mp4"
            count[set_split] += 1
            plans.append(ClipPlan(file, set_split, char_split, idx, character, animation, viewpoint, photo,
                                  crop, length, (start, start + drift), int(rng.integers(2 ** 31))))
    return plans


def background(photo: np.ndarray, crop: tuple[int, int, int, int], size: int) -> np.ndarray:
    """(size, size, 3) float32: the crop of the photograph, resized."""
    x, y, w, h = crop
    return np.asarray(Image.fromarray(photo).crop((x, y, x + w, y + h)).resize((size, size), Image.LANCZOS),
                      np.float32)


def scaled_sequence(character: lo.Character, animation: str, viewpoint: str, cell: int,
                    data_dir: Path | None) -> np.ndarray:
    """(n, cell, cell, 4) uint8 RGBA: one LPC row of the character, nearest-neighbour scaled."""
    s = 4 * lpc.ANIMATIONS.index(animation) + lpc.VIEWPOINTS.index(viewpoint)
    n = int(lpc.SEQ_LENGTHS[s])
    rgba = lo.render_frames([character] * n, lpc.SEQ_STARTS[s] + np.arange(n), data_dir)
    if cell == lpc.CELL:
        return rgba
    return np.stack([np.asarray(Image.fromarray(f).resize((cell, cell), Image.NEAREST)) for f in rgba])


def paste(canvas: np.ndarray, rgba: np.ndarray, x: int, y: int) -> None:
    """Alpha-composite (c, c, 4) uint8 rgba onto (S, S, 3) float32 canvas at (x, y), clipped to it."""
    s, c = canvas.shape[0], rgba.shape[0]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + c, s), min(y + c, s)
    if x0 >= x1 or y0 >= y1:
        return
    part = rgba[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
    a = part[..., 3:] / 255
    canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - a) + part[..., :3] * a


def poses(plan: ClipPlan, sprite: np.ndarray, size: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(sprite frame, x, y) per video frame: where the cell goes and which of its frames it shows."""
    cell = sprite.shape[1]
    ys, xs = np.nonzero(sprite[..., 3].max(0))  # the figure's extent over the whole row
    margin = max(1, size // 32)
    lo_x, hi_x = margin - int(xs.min()), size - margin - 1 - int(xs.max())  # cell x keeping the figure in
    y = round(rng.uniform(0.78, 0.95) * size) - 1 - int(ys.max())  # feet on the ground line
    if plan.animation == "walk":
        speed = rng.uniform(*WALK_SPEED) * cell / lpc.CELL
        frames = max(2, round((hi_x - lo_x) / speed))
        step = 1 if plan.viewpoint == "right" else -1
        start = lo_x if step > 0 else hi_x
        phase = int(rng.integers(8))
        return [(1 + (t + phase) % 8, round(start + step * t * (hi_x - lo_x) / (frames - 1)), y)
                for t in range(frames)]
    n = len(sprite)
    x = int(rng.integers(lo_x, hi_x + 1))
    cycle: list[int] = []
    while len(cycle) < plan.length:  # a hold at rest, the animation, a hold at its last frame
        cycle += [0] * int(rng.integers(2, 7)) + list(range(n)) + [n - 1] * int(rng.integers(2, 5))
    return [(f, x, y) for f in cycle[:plan.length]]


def render_clip(plan: ClipPlan, photo: np.ndarray, sprite: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 frames of one clip."""
    rng = np.random.default_rng(plan.seed)
    bg = background(photo, plan.crop, size)
    steps = poses(plan, sprite, size, rng)
    gains = np.linspace(*plan.gain, len(steps), dtype=np.float32)
    out = np.empty((len(steps), size, size, 3), np.uint8)
    for t, ((f, x, y), g) in enumerate(zip(steps, gains)):
        frame = bg.copy()
        paste(frame, sprite[f], x, y)
        frame = frame * g + rng.normal(0, NOISE_SIGMA, frame.shape).astype(np.float32)
        out[t] = np.clip(np.round(frame), 0, 255)
    return out


def write_mp4(frames: np.ndarray, path: Path, fps: int = FPS, crf: int = CRF) -> None:
    """(N, H, W, 3) uint8 frames to H.264 yuv420p (H and W even)."""
    try:
        import av
    except ImportError:
        raise EqsdkError(f"writing MP4 clips needs PyAV: {INSTALL_HINT}") from None
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "medium",
                                                                     "threads": "1"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # tiny frames: one thread is as fast, and the set stays on one core
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())


def readme(manifest: dict) -> str:
    """DIR/README.md: what the set is, how to train on it, every clip and every licence."""
    lines = ["# Demonstration footage", "",
             f"LPC characters over photographs, written by `{manifest['command']}`: "
             f"{manifest['size']}x{manifest['size']} px, {manifest['fps']} fps, H.264 (CRF {manifest['crf']}); "
             f"character cell {manifest['cell']} px; sensor noise sigma {manifest['noise_sigma']}/255; "
             "global gain drifting by 3-6% over each clip.", "",
             "- `train/`: characters of the open LPC train split; train on this folder:",
             f"  `eqsdk train {manifest['out']}/train --out runs/footage --size 64`",
             "- `held-out/`: characters of the test split (combinations training never sees) and the "
             "test-layers split (layers training never sees).", "",
             "| file | split | character split, index | animation | viewpoint | photograph | frames | character |",
             "|---|---|---|---|---|---|---|---|"]
    for c in manifest["clips"]:
        lines.append(f"| {c['file']} | {c['split']} | {c['character_split']} {c['character_index']} | "
                     f"{c['animation']} | {c['viewpoint']} | {c['photo']} | {c['frames']} | {c['character']} |")
    lines += ["", "## Licences", "",
              "The characters are drawn from the Universal LPC Spritesheet layers, dual licensed CC-BY-SA 3.0 "
              "and GNU GPL 3.0; credit the artists (LICENSES/LPC-CREDITS.md of eqsdk). The photographs come "
              "with scikit-image (skimage.data); the licence statements of its docstrings:", ""]
    for name, p in manifest["photos"].items():
        lines.append(f"- {name}: {p['licence']} Source: {p['source']}.")
    return "\n".join(lines) + "\n"


def make_footage(out: Path, clips: int = 30, size: int = 128, seed: int = 0, data_dir: Path | None = None,
                 cell_fraction: float = CELL_FRACTION, command: str = "") -> dict:
    """Write the set into `out` (absent or empty; see the module docstring); returns the manifest."""
    out = Path(out)
    if not isinstance(clips, int) or clips < 1:
        raise InputError(f"clips: got {clips!r}, expected a positive number of clips")
    if not isinstance(size, int) or not 32 <= size <= MAX_SIZE or size % 2:
        raise InputError(f"size: got {size!r}, expected an even number of pixels from 32 to {MAX_SIZE} "
                         "(H.264 yuv420p needs even sides)")
    cell = round(cell_fraction * size)
    if not 16 <= cell <= size:
        raise InputError(f"cell fraction: got {cell_fraction!r} ({cell} px at size {size}), expected a cell "
                         f"of 16 px up to the frame's side")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"output {str(out)!r}: {'not a folder' if not out.is_dir() else 'not empty'}; "
                         "expected a new or empty folder")
    find_data("lpc", data_dir)  # DataNotFoundError says where it looked, before anything is written
    photos = {name: load_photo(name) for name in PHOTOS}
    plans = plan_clips(clips, seed, {n: p.shape[:2] for n, p in photos.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private; DIR gets a new folder's usual mode
        for sub in ("train", "held-out"):
            (tmp / sub).mkdir()
        entries = []
        for plan in plans:
            character = open_characters(plan.character_split)[plan.character_index]
            sprite = scaled_sequence(character, plan.animation, plan.viewpoint, cell, data_dir)
            frames = render_clip(plan, photos[plan.photo], sprite, size)
            write_mp4(frames, tmp / plan.file)
            entry = asdict(plan)
            entry.pop("length")
            entry.update(frames=len(frames), photo_licence=PHOTOS[plan.photo][0])
            entries.append(entry)
        manifest = {"command": command or "python -m examples.make_footage", "out": str(out), "size": size,
                    "fps": FPS, "crf": CRF, "cell": cell, "noise_sigma": NOISE_SIGMA, "seed": seed,
                    "lpc_split_seed": LPC_SPLIT_SEED,
                    "photos": {n: {"licence": lic, "source": src, "loader": f"skimage.data.{n}"}
                               for n, (lic, src) in PHOTOS.items()},
                    "clips": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / "README.md").write_text(readme(manifest))
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m examples.make_footage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    p.add_argument("--clips", type=int, default=30, help="clips in all, a fifth of them held out (default 30)")
    p.add_argument("--size", type=int, default=128, help="frame side in pixels, even (default 128)")
    p.add_argument("--seed", type=int, default=0, help="which characters, photographs, crops and poses")
    p.add_argument("--cell-fraction", type=float, default=CELL_FRACTION,
                   help=f"the LPC cell's side over the frame's side (default {CELL_FRACTION})")
    p.add_argument("--data-dir", type=Path, help="the data directory holding lpc/ (train/data_dir.py)")
    args = p.parse_args(argv)
    command = "python -m examples.make_footage " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        manifest = make_footage(args.out, args.clips, args.size, args.seed, args.data_dir, args.cell_fraction,
                                command)
    except EqsdkError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    n = {s: sum(c["split"] == s for c in manifest["clips"]) for s in ("train", "held-out")}
    print(f"wrote {args.out}: {n['train']} train and {n['held-out']} held-out clips, "
          f"{sum(c['frames'] for c in manifest['clips'])} frames; manifest.json and README.md list them")


if __name__ == "__main__":
    main()
