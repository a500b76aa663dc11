"""Training pairs from a folder of the user's own footage: one video per file or per folder of frames.

    python -m train.videos FOLDER [--size 64] [--crop x,y,w,h] [--sheet pairs.png]

Input. FOLDER holds video files (.mp4 .mov .mkv .webm .avi .gif, decoded with PyAV) and/or
sub-folders of frames (.png .jpg .jpeg, sorted by name with digit runs compared as numbers, so
frame2 comes before frame10); each file or sub-folder is one video. Hidden names (a leading dot)
are skipped; anything else is reported.

Validation. Every entry is read up front and the build returns a VideoReport: the usable clips,
and per rejected entry its path and the reason (unreadable or corrupt, fewer than MIN_FRAMES
frames, frames of differing sizes, a crop outside the frame, not a video). Nothing usable at all
raises VideoDataError (an InputError, so a ValueError): what was received, what was expected.

Frames to the model size. Each frame is cropped, then resized to size x size with PIL's LANCZOS
filter (a large crop is first box-reduced, an area average, to 3x the size). The crop is the
centred square of side min(W, H) by default, or the given (x, y, w, h) in source pixels, which
must lie inside every frame of the clip (a non-square crop is stretched to the square).
Orientation metadata of phone videos is not applied.

Frame cap. At most max_frames frames (default MAX_FRAMES) are kept per video, evenly spaced over
the whole clip (the first and last frames included), so a long clip is covered end to end at a
lower frame rate. Gaps are counted in kept frames.

Pairs. A training pair is two different kept frames i != j of one video with |i - j| <= max_gap
(default DEFAULT_MAX_GAP): i uniform over the split's frames (so a video is drawn in proportion
to its kept frames), j uniform over the frames within the gap. sample_pairs(max_gap=k) narrows
the dataset's gap to min(k, max_gap). augment=True mirrors both frames of a pair left-right with
probability 1/2 (a still background stays still); recolour is ignored (no palette to redraw).

Split. By video, seeded: the clips sorted by path are shuffled by the seed and the first
max(1, round(val_fraction * n)) go to validation, the rest to training, whenever there are n >= 2
usable videos. A single video is split in time instead: its last max(MIN_FRAMES,
round(val_fraction * frames)) kept frames are validation, provided MIN_FRAMES or more remain for
training (otherwise both splits use the whole clip, and the report says so).

Cache. Each clip is decoded once into <cache_dir>/<sha256 of its bytes>-<settings>.npy, a
(frames, 3, size, size) uint8 array with a .json beside it (source frame count and size, the
camera-motion figure). The settings part names size, crop and frame cap, so changing any of them
decodes again; a frame folder's hash covers its frame names and bytes. Files are written to a
temporary name and renamed, the .json last, so an interrupted build leaves no entry that a later
one would trust. Arrays are opened with mmap: memory stays bounded by what sampling touches.
cache_dir defaults to $EQSDK_VIDEO_CACHE or ~/.cache/eqsdk/videos.

Camera motion. The method assumes a still background. Per clip, background_change is the median,
over up to MOTION_PAIRS pairs of kept frames DEFAULT_MAX_GAP apart, of the fraction of pixels in
the border strip (the outer eighth on each side, where the background mostly is) whose value
changes by more than CHANGE_LEVEL / 255 in some channel, on frames averaged in whole blocks down
to about MOTION_SIZE x MOTION_SIZE (2x2 blocks at size 64), which evens out GIF dithering and
compression noise. A still camera with a character moving inside the frame stays near 0; a pan,
tilt, zoom or shake over a textured scene changes most of the border. Clips above MOVING_CAMERA
are listed as warnings.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import numbers
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from eqsdk.errors import EqsdkError, InputError
from eqsdk.images import check_name, check_pixels, open_image, opened, reason, replacing, save_image, to_rgb
from eqsdk.video import natural_key

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_FRAMES = 2  # a pair needs two different frames
REDUCING_GAP = 3.0  # PIL: box-reduce a large crop to this times the size, then LANCZOS (7x faster from 1080p)
MAX_FRAMES = 2000  # kept per video, evenly spaced
DEFAULT_MAX_GAP = 8  # kept frames between the two frames of a pair, at most (about 1/4 s at 30 fps)
VAL_FRACTION = 0.1
CACHE_ENV = "EQSDK_VIDEO_CACHE"
DEFAULT_CACHE = Path("~/.cache/eqsdk/videos")
CACHE_VERSION = 1  # bump when the decoding or resizing changes what a cache file holds
MOTION_PAIRS = 64
MOTION_SIZE = 32  # frames are averaged down to about this size (whole blocks) before comparing
CHANGE_LEVEL = 16  # of 255: above compression noise and slight lighting drift
MOVING_CAMERA = 0.2  # background_change above which a clip is listed as moving
INSTALL_HINT = 'pip install "eqsdk[train]"'


class VideoDataError(InputError):
    """A folder of footage gives no training data, or a setting does not fit it."""


class ClipRejected(Exception):
    """One entry of the folder is not a usable clip; the message is the reason."""


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


@dataclass(frozen=True)
class FrameSettings:
    """What a cache file depends on besides the source bytes."""
    size: int = 64
    crop: tuple[int, int, int, int] | None = None  # x, y, w, h in source pixels; None: centre square
    max_frames: int = MAX_FRAMES

    def __post_init__(self):
        if not _is_int(self.size) or self.size < 1:
            raise VideoDataError(f"size: got {self.size!r}, expected a positive number of pixels (64, 128)")
        if not _is_int(self.max_frames) or self.max_frames < MIN_FRAMES:
            raise VideoDataError(f"max_frames: got {self.max_frames!r}, expected an integer >= {MIN_FRAMES}")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "max_frames", int(self.max_frames))
        if self.crop is not None:
            crop = tuple(self.crop) if isinstance(self.crop, Sequence | np.ndarray) else ()
            if len(crop) != 4 or not all(map(_is_int, crop)) or min(crop[:2]) < 0 or min(crop[2:]) < 1:
                raise VideoDataError(f"crop: got {self.crop!r}, expected x,y,w,h: four integers, "
                                     "x, y >= 0 and w, h >= 1 (source pixels)")
            object.__setattr__(self, "crop", tuple(map(int, crop)))

    def key(self) -> str:
        crop = "centre" if self.crop is None else "crop" + "_".join(map(str, self.crop))
        return f"s{self.size}-{crop}-n{self.max_frames}-v{CACHE_VERSION}"

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The crop as a PIL box (left, top, right, bottom) in a width x height frame."""
        if self.crop is None:
            side = min(width, height)
            x, y = (width - side) // 2, (height - side) // 2
            return x, y, x + side, y + side
        x, y, w, h = self.crop
        if x + w > width or y + h > height:
            raise ClipRejected(f"crop {x},{y},{w},{h} reaches ({x + w}, {y + h}), outside its "
                           f"{width}x{height} frames")
        return x, y, x + w, y + h


@dataclass(frozen=True)
class UsableClip:
    """One usable video."""
    path: Path
    frames: int  # kept (cached) frames
    source_frames: int
    source_size: tuple[int, int]  # (W, H)
    background_change: float  # camera-motion figure (module docstring)
    cached: bool  # True: read from the cache, not decoded
    cache_file: Path


@dataclass(frozen=True)
class RejectedClip:
    path: Path
    reason: str


@dataclass(frozen=True)
class VideoReport:
    folder: Path
    settings: FrameSettings
    clips: tuple[UsableClip, ...]
    rejected: tuple[RejectedClip, ...]
    train: tuple[Path, ...]  # clips of each split (one clip in both: split in time)
    val: tuple[Path, ...]
    split_rule: str
    moving_camera: tuple[Path, ...] = field(default=())  # clips above MOVING_CAMERA

    def format(self) -> str:
        """The report as the CLI prints it."""
        s = self.settings
        name = lambda p: str(p.relative_to(self.folder)) if p.is_relative_to(self.folder) else str(p)  # noqa: E731
        crop = "centre square" if s.crop is None else "crop x,y,w,h = " + ",".join(map(str, s.crop))
        lines = [f"{self.folder}: {len(self.clips)} usable clips, {len(self.rejected)} rejected; "
                 f"frames {s.size}x{s.size} ({crop}, at most {s.max_frames} per clip)",
                 f"{'clip':<32} {'split':<6} {'frames':>7} {'source':>16} {'bg change':>9} cache"]
        for c in self.clips:
            split = "both" if c.path in self.train and c.path in self.val else \
                "val" if c.path in self.val else "train"
            w, h = c.source_size
            lines.append(f"{name(c.path):<32} {split:<6} {c.frames:>7} {f'{c.source_frames} of {w}x{h}':>16} "
                         f"{c.background_change:>9.3f} {'hit' if c.cached else 'decoded'}")
        lines.append(f"split: {self.split_rule}")
        for r in self.rejected:
            lines.append(f"rejected {name(r.path)}: {r.reason}")
        for p in self.moving_camera:
            lines.append(f"warning: {name(p)}: the background changes (camera moves?): background_change "
                         f"above {MOVING_CAMERA}; the method assumes a still camera")
        return "\n".join(lines)


class FramePairs(NamedTuple):
    x1: torch.Tensor  # (B, 3, S, S) frame i in [0, 1]
    x2: torch.Tensor  # (B, 3, S, S) frame j of the same video
    tx: None  # no ground-truth motion in footage


# Reading one entry.
def _av():
    try:
        import av
    except ImportError:
        raise EqsdkError(f"reading videos needs PyAV: {INSTALL_HINT}") from None
    return av


def _kept(count: int, max_frames: int) -> np.ndarray:
    """Indices of the kept frames of a clip of `count` frames: all, or max_frames evenly spaced."""
    if count <= max_frames:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, max_frames)).astype(np.int64))


def _to_model(im: Image.Image, settings: FrameSettings, box: tuple[int, int, int, int]) -> np.ndarray:
    """(3, S, S) uint8: the crop box of an RGB frame, resized with LANCZOS (after a box reduction
    to at most REDUCING_GAP times the size). Cropped first: resize's own box would let the filter
    reach pixels outside the crop. Channels first, as the model reads
    them, so a batch needs no transpose."""
    size = (settings.size, settings.size)
    return np.asarray(im.crop(box).resize(size, Image.LANCZOS, reducing_gap=REDUCING_GAP)).transpose(2, 0, 1)


def _decode_video(path: Path, settings: FrameSettings) -> tuple[np.ndarray, int, tuple[int, int]]:
    """(N, 3, S, S) uint8 kept frames, the source frame count and (W, H)."""
    av = _av()
    try:
        with av.open(str(path)) as container:  # pass 1: count packets, nothing decoded
            if not container.streams.video:
                raise ClipRejected("no video stream")
            stream = container.streams.video[0]
            count = sum(1 for packet in container.demux(stream) if packet.size)
        if count < MIN_FRAMES:
            raise ClipRejected(f"{count} frame{'s' * (count != 1)}; expected at least {MIN_FRAMES}")
        keep, out, size, box, k = set(_kept(count, settings.max_frames).tolist()), [], None, None, -1
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            size = (stream.codec_context.width, stream.codec_context.height)
            check_pixels(size, "frames")
            for k, frame in enumerate(container.decode(stream)):
                if k not in keep:
                    continue
                if (frame.width, frame.height) != size:
                    raise ClipRejected(f"frame {k} is {frame.width}x{frame.height}, the first "
                                       f"{size[0]}x{size[1]}; expected one size")
                box = box or settings.box(*size)
                out.append(_to_model(frame.to_image(), settings, box))
    except av.error.FFmpegError as e:
        raise ClipRejected(f"unreadable or corrupt ({getattr(e, 'strerror', None) or reason(e)})") from None
    except InputError as e:
        raise ClipRejected(str(e)) from None
    if len(out) < MIN_FRAMES:
        raise ClipRejected(f"{k + 1} frames decoded; expected at least {MIN_FRAMES}")
    return np.stack(out), max(count, k + 1), size


def _frame_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in FRAME_SUFFIXES), key=natural_key)


def _decode_folder(folder: Path, settings: FrameSettings) -> tuple[np.ndarray, int, tuple[int, int]]:
    files = _frame_files(folder)
    if len(files) < MIN_FRAMES:
        raise ClipRejected(f"{len(files)} frame files ({'/'.join(FRAME_SUFFIXES)}); expected at least "
                           f"{MIN_FRAMES} (a sub-folder is one video as frames; video files go in the folder itself)")
    try:
        sizes = []
        for p in files:  # headers only: sizes before any decoding
            with opened(p, "frame") as im:
                sizes.append(im.size)
        if len(set(sizes)) > 1:
            odd = next(p for p, s in zip(files, sizes) if s != sizes[0])
            w, h = sizes[files.index(odd)]
            raise ClipRejected(f"frame sizes differ: {files[0].name} is {sizes[0][0]}x{sizes[0][1]}, "
                           f"{odd.name} is {w}x{h}; expected one size")
        box = settings.box(*sizes[0])
        frames = [_to_model(to_rgb(open_image(files[k], "frame"), f"frame {files[k].name}"), settings, box)
                  for k in _kept(len(files), settings.max_frames)]
    except InputError as e:
        raise ClipRejected(str(e)) from None
    return np.stack(frames), len(files), sizes[0]


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes, or of a frame folder's frame names and bytes."""
    h = hashlib.sha256()
    files = _frame_files(path) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def background_change(frames: np.ndarray, gap: int = DEFAULT_MAX_GAP, pairs: int = MOTION_PAIRS) -> float:
    """The camera-motion figure of (N, 3, S, S) uint8 frames (module docstring)."""
    n = len(frames)
    gap = min(gap, n - 1)
    starts = np.unique(np.round(np.linspace(0, n - 1 - gap, min(pairs, n - gap))).astype(np.int64))
    f = max(1, frames.shape[2] // MOTION_SIZE)
    s = frames.shape[2] // f

    def pooled(k: np.ndarray) -> np.ndarray:  # (P, 3, s, s): f x f block means, noise evened out
        x = frames[k][..., :s * f, :s * f].astype(np.float32)
        return x.reshape(len(k), 3, s, f, s, f).mean((3, 5))

    b = max(1, s // 8)
    border = np.ones((s, s), bool)
    border[b:-b, b:-b] = False
    diff = np.abs(pooled(starts) - pooled(starts + gap))[..., border]  # (P, 3, border pixels)
    return float(np.median((diff.max(1) > CHANGE_LEVEL).mean(-1)))


def _entries(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=natural_key)


def _read_cache(npy: Path) -> tuple[dict, np.ndarray] | None:
    """A cache entry's metadata and mmapped (N, 3, S, S) uint8 frames; None when missing or unreadable."""
    try:
        meta = json.loads(npy.with_suffix(".json").read_text())
        frames = np.load(npy, mmap_mode="r")
        if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) < MIN_FRAMES:
            return None
        return meta, frames
    except (OSError, ValueError):  # missing, or damaged outside this module's atomic writes
        return None


def _cached(path: Path, settings: FrameSettings, cache_dir: Path) -> tuple[UsableClip, np.ndarray]:
    """The clip from the cache, decoding it into the cache first when missing."""
    npy = cache_dir / f"{content_hash(path)}-{settings.key()}.npy"
    entry = _read_cache(npy)
    cached = entry is not None
    if not cached:
        frames, count, size = (_decode_folder if path.is_dir() else _decode_video)(path, settings)
        meta = {"source": str(path), "source_frames": count, "source_size": list(size),
                "background_change": background_change(frames), "settings": asdict(settings)}
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with replacing(npy) as tmp, open(tmp, "wb") as f:
                np.save(f, frames)
            with replacing(npy.with_suffix(".json")) as tmp:  # last: it marks the entry complete
                tmp.write_text(json.dumps(meta))
        except OSError as e:
            raise VideoDataError(f"video cache {str(cache_dir)!r}: cannot write ({reason(e)}); expected a "
                                 f"writable folder (cache_dir, ${CACHE_ENV})") from None
        entry = meta, np.load(npy, mmap_mode="r")
    meta, frames = entry
    return UsableClip(path, len(frames), meta["source_frames"], tuple(meta["source_size"]),
                meta["background_change"], cached, npy), frames


def _split(clips: list[UsableClip], val_fraction: float, seed: int) -> tuple[list, list, str]:
    """Segments (clip index, start, stop) of each split and the rule applied (module docstring)."""
    n = len(clips)
    if n >= 2:
        n_val = max(1, round(val_fraction * n))
        order = np.random.default_rng(seed).permutation(n)
        val = sorted(order[:n_val].tolist())
        train = sorted(order[n_val:].tolist())
        rule = (f"by video, seed {seed}: {len(train)} train, {len(val)} val "
                f"(max(1, round({val_fraction} x {n})) held out)")
        return [(k, 0, clips[k].frames) for k in train], [(k, 0, clips[k].frames) for k in val], rule
    frames = clips[0].frames
    n_val = max(MIN_FRAMES, round(val_fraction * frames))
    if frames - n_val < MIN_FRAMES:
        return [(0, 0, frames)], [(0, 0, frames)], \
            f"one video of {frames} frames: too short to split, both splits use all of it"
    return [(0, 0, frames - n_val)], [(0, frames - n_val, frames)], \
        f"one video, split in time: frames 0-{frames - n_val - 1} train, its last {n_val} val"


class VideoData:
    """A folder of footage, validated and cached (module docstring); pairs(split) samples it."""

    def __init__(self, report: VideoReport, frames: Sequence[np.ndarray], segments: dict[str, list]):
        self.report, self.frames, self.segments = report, list(frames), segments

    @classmethod
    def build(cls, folder: Path | str, size: int = 64, crop: Sequence[int] | None = None,
              max_frames: int = MAX_FRAMES, cache_dir: Path | str | None = None,
              val_fraction: float = VAL_FRACTION, seed: int = 0) -> "VideoData":
        settings = FrameSettings(size, crop, max_frames)
        if not 0 < val_fraction < 1:
            raise VideoDataError(f"val_fraction: got {val_fraction!r}, expected a fraction in (0, 1)")
        folder = Path(folder).expanduser()
        check_name(folder, f"footage {str(folder)!r}")
        expected = (f"expected a folder of videos ({' '.join(VIDEO_SUFFIXES)}) and/or sub-folders of "
                    f"frames ({' '.join(FRAME_SUFFIXES)})")
        if not folder.is_dir():
            what = "not a folder" if folder.exists() else "no such folder"
            raise VideoDataError(f"footage {str(folder)!r}: {what}; {expected}")
        cache_dir = Path(cache_dir if cache_dir is not None
                         else os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
        try:
            entries = _entries(folder)
        except OSError as e:
            raise VideoDataError(f"footage {str(folder)!r}: cannot list ({reason(e)}); {expected}") from None
        clips, frames, rejected = [], [], []
        for path in entries:
            try:
                if not (path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES):
                    raise ClipRejected(f"not a video; {expected}")
                clip, f = _cached(path, settings, cache_dir)
                clips.append(clip)
                frames.append(f)
            except ClipRejected as e:
                rejected.append(RejectedClip(path, str(e)))
            except OSError as e:  # unreadable file, permissions
                rejected.append(RejectedClip(path, f"unreadable ({reason(e)})"))
        if not clips:
            why = "; ".join(f"{r.path.name}: {r.reason}" for r in rejected) or "the folder is empty"
            raise VideoDataError(f"footage {str(folder)!r}: no usable clip ({why}); {expected}, "
                                 f"each of at least {MIN_FRAMES} frames")
        train, val, rule = _split(clips, val_fraction, seed)
        report = VideoReport(folder, settings, tuple(clips), tuple(rejected),
                             tuple(clips[k].path for k, _, _ in train), tuple(clips[k].path for k, _, _ in val),
                             rule, tuple(c.path for c in clips if c.background_change > MOVING_CAMERA))
        return cls(report, frames, {"train": train, "val": val})

    def pairs(self, split: str, max_gap: int = DEFAULT_MAX_GAP) -> "VideoPairs":
        if split not in self.segments:
            raise VideoDataError(f"split {split!r}: expected one of {sorted(self.segments)}")
        return VideoPairs([(self.frames[k], a, b) for k, a, b in self.segments[split]], max_gap)


class VideoPairs:
    """Training pairs of one split: segments (frames (N, 3, S, S) uint8, start, stop) of videos."""

    def __init__(self, segments: Sequence[tuple[np.ndarray, int, int]], max_gap: int = DEFAULT_MAX_GAP):
        if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 1:
            raise VideoDataError(f"max_gap: got {max_gap!r}, expected a positive number of frames")
        self.segments, self.max_gap = list(segments), max_gap
        self.lengths = np.array([b - a for _, a, b in self.segments])
        self.size = self.segments[0][0].shape[2]

    def sample_indices(self, count: int, rng: np.random.Generator, max_gap: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B,) segment, frame i, frame j (within the segment): i != j, |i - j| <= the gap."""
        gap = self.max_gap if max_gap is None else min(max_gap, self.max_gap)
        start = np.concatenate([[0], np.cumsum(self.lengths)])
        flat = rng.integers(0, start[-1], size=count)  # every frame of the split equally likely
        seg = np.searchsorted(start, flat, side="right") - 1
        i = flat - start[seg]
        lo, hi = np.maximum(0, i - gap), np.minimum(self.lengths[seg] - 1, i + gap)
        j = rng.integers(lo, hi)  # hi - lo values: the window [lo, hi] without i
        j += j >= i
        return seg, i, j

    def sample_pairs(self, count: int, rng: np.random.Generator, max_gap: int | None = None,
                     augment: bool = False, recolour: float = 0.0) -> FramePairs:
        seg, i, j = self.sample_indices(count, rng, max_gap)
        s = self.size
        x = np.empty((2, count, 3, s, s), np.uint8)
        for k in np.unique(seg):  # one gather per video from its mmap
            rows = np.flatnonzero(seg == k)
            frames, a, _ = self.segments[k]
            x[0, rows] = frames[a + i[rows]]
            x[1, rows] = frames[a + j[rows]]
        if augment:
            flip = rng.random(count) < 0.5
            x[:, flip] = x[:, flip, ..., ::-1]
        t = torch.from_numpy(np.multiply(x, np.float32(1 / 255), dtype=np.float32))  # (2, B, 3, S, S)
        return FramePairs(t[0], t[1], None)


@lru_cache(maxsize=4)
def load_videos(folder: str, size: int = 64, crop: tuple[int, int, int, int] | None = None) -> VideoData:
    """VideoData.build with the defaults, kept for the process: train and val splits share it."""
    return VideoData.build(folder, size, crop)


def pair_sheet(pairs: VideoPairs, rng: np.random.Generator, count: int = 16, columns: int = 4) -> np.ndarray:
    """(H, W, 3) uint8 contact sheet: count pairs, x1 beside x2, a gap between pairs."""
    x1, x2, _ = pairs.sample_pairs(count, rng)
    s, gap = pairs.size, max(2, pairs.size // 16)
    rows = -(-count // columns)
    sheet = np.full((rows * (s + gap) - gap, columns * (2 * s + gap) - gap, 3), 128, np.uint8)
    for k in range(count):
        y, x = (k // columns) * (s + gap), (k % columns) * (2 * s + gap)
        pair = torch.cat([x1[k], x2[k]], 2).permute(1, 2, 0).mul(255).round().byte().numpy()
        sheet[y:y + s, x:x + 2 * s] = pair
    return sheet


def parse_crop(text: str) -> tuple[int, int, int, int]:
    try:
        crop = tuple(int(v) for v in text.split(","))
    except ValueError:
        crop = ()
    if len(crop) != 4:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected x,y,w,h: four integers in source pixels")
    return crop


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.videos", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=64, help="model frame size (default %(default)s)")
    parser.add_argument("--crop", type=parse_crop, help="x,y,w,h in source pixels (default: centre square)")
    parser.add_argument("--max-frames", type=int, default=MAX_FRAMES, help="kept per clip (default %(default)s)")
    parser.add_argument("--max-gap", type=int, default=DEFAULT_MAX_GAP,
                        help="kept frames between a pair's two, at most (default %(default)s)")
    parser.add_argument("--cache-dir", type=Path, help=f"default ${CACHE_ENV} or {DEFAULT_CACHE}")
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG of training pairs (x1 | x2)")
    args = parser.parse_args(argv)
    if args.max_gap < 1:
        parser.error(f"--max-gap: got {args.max_gap}, expected a positive number of frames")
    try:
        data = VideoData.build(args.folder, args.size, args.crop, args.max_frames, args.cache_dir, seed=args.seed)
        print(data.report.format())
        if args.sheet:
            sheet = pair_sheet(data.pairs("train", args.max_gap), np.random.default_rng(args.seed))
            save_image(sheet, args.sheet, overwrite=True, scale=max(1, 128 // args.size))
            print(f"contact sheet: {args.sheet}")
    except EqsdkError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
