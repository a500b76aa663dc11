"""Clips in and out: animated GIF/PNG/WebP and folders of frames with Pillow; MP4 and other
video files with imageio's ffmpeg plugin (the optional `video` extra, imported only when used).

Frames are (H, W, 3) uint8 arrays, streamed: a Clip reads them from its source as they are
used, and save_clip writes each as it comes, so a clip of any length runs in flat memory.
"""
from __future__ import annotations

import math
import operator
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from pathlib import Path

import numpy as np
from PIL import GifImagePlugin, Image

from eqsdk.errors import BackendError, InputError
from eqsdk.images import (array_to_image, check_name, check_pixels, check_place, check_scale,
                          open_image, opened, reason, replacing, temp_beside, to_rgb, upscale)

DEFAULT_FPS = 10.0
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi")  # those whose default codec (H.264) works
CLIP_OUTPUTS = ".gif, " + ", ".join(VIDEO_EXTENSIONS) + " or a folder name (no extension)"
# Frame rates each output can hold: GIF stores durations in 10 ms steps (at most 100 fps).
FPS_RANGE = {"gif": (0.1, 100.0), "video": (0.1, 240.0), "folder": (0.1, 240.0)}


def imageio_v2():
    """imageio's v2 API, checking that its ffmpeg plugin's binary package is there too."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  ships the ffmpeg binary the plugin runs
    except ImportError:
        raise BackendError("video files (.mp4, ...) need imageio and imageio-ffmpeg: "
                           "pip install 'eqsdk[video]'") from None
    return imageio


def natural_key(path: Path) -> list:
    """Sort key putting frame2 before frame10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


# Reading.
class Clip(Sequence):
    """The frames of a clip, (H, W, 3) uint8, read from the source as they are used: iterating
    decodes one frame at a time, clip[k] decodes frame k. Its length, first frame size and
    frames per second (None if the source has no timing) are known once it is opened."""

    def __init__(self, path: Path, count: int, size: tuple[int, int], fps: float | None,
                 frames_from: Callable[[int], Iterator[np.ndarray]]):
        self.path, self.count, self.size, self.fps = path, count, size, fps
        self.frames_from = frames_from  # k -> frames k, k + 1, ... to the end

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames_from(0)

    def __getitem__(self, k):
        if isinstance(k, slice):  # one pass over the source, not one per frame
            start, stop, step = k.indices(self.count)
            if step < 0:
                return [self[i] for i in range(start, stop, step)]
            return list(islice(self.frames_from(start), 0, max(0, stop - start), step))
        k = operator.index(k)
        if not -self.count <= k < self.count:
            raise IndexError(f"frame {k} of a clip of {self.count}")
        return next(self.frames_from(k % self.count))

    def __repr__(self) -> str:
        w, h = self.size
        return f"Clip({str(self.path)!r}, {self.count} frames, {w}x{h}, fps={self.fps})"


def read_clip(path: str | os.PathLike) -> tuple[Clip, float | None]:
    """An animated GIF/PNG/WebP, a video file (.mp4, ...) or a folder of image files (sorted
    naturally) as a Clip, and its frames per second (None if the source has no timing).
    The source is checked when opened (readable, sizes, frame count); frames are decoded as
    they are used."""
    path = Path(path)
    check_name(path, f"drive {str(path)!r}")
    if path.is_dir():
        return read_folder(path), None
    if not path.exists():
        raise InputError(f"drive {str(path)!r}: no such file or folder; expected a GIF, "
                         "a video file or a folder of frames")
    clip = read_video(path) if path.suffix.lower() in VIDEO_EXTENSIONS else read_animation(path)
    return clip, clip.fps


def read_animation(path: Path) -> Clip:
    with opened(path, "drive") as im:
        count = getattr(im, "n_frames", 1)  # walks the file: a truncated one fails here
        durations = []
        for k in range(count):
            im.seek(k)
            durations.append(im.info.get("duration") or 0)  # milliseconds
        im.load()  # the last frame: a truncated file fails before any work
        size = im.size
    mean = sum(durations) / count

    def frames_from(start: int) -> Iterator[np.ndarray]:
        with opened(path, "drive") as im:
            for k in range(start, count):
                im.seek(k)
                yield np.asarray(to_rgb(im, f"drive frame {k}"))

    return Clip(path, count, size, 1000 / mean if mean > 0 else None, frames_from)


def read_folder(path: Path) -> Clip:
    image_ext = Image.registered_extensions()
    # Hidden files are skipped: macOS leaves ._frame1.png beside frame1.png on some disks.
    files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                    and p.suffix.lower() in image_ext), key=natural_key)
    if not files:
        raise InputError(f"drive {str(path)!r}: folder has no image files; expected frames "
                         "such as frame_0000.png, frame_0001.png, ...")
    with opened(files[0], "drive frame") as im:
        size = im.size
    for p in files[1:]:  # every header is read now: formats and declared sizes before any work
        with opened(p, "drive frame"):
            pass

    def frames_from(start: int) -> Iterator[np.ndarray]:
        for p in files[start:]:
            yield np.asarray(to_rgb(open_image(p, "drive frame"), f"drive frame {str(p)!r}"))

    return Clip(path, len(files), size, None, frames_from)


def read_video(path: Path) -> Clip:
    imageio = imageio_v2()
    where = f"drive {str(path)!r}"
    try:
        with imageio.get_reader(path, format="FFMPEG") as reader:
            meta = reader.get_meta_data()
            size = tuple(meta.get("size") or (0, 0))
            check_pixels(size, where)
            count = reader.count_frames()  # decodes the stream in ffmpeg: a truncated one fails here
    except (OSError, RuntimeError, ValueError, IndexError) as e:  # imageio's errors for bad files
        raise InputError(f"{where}: cannot read as video: corrupt, truncated or not a video "
                         f"({reason(e)})") from None
    if not count:
        raise InputError(f"{where}: video has no frames; expected at least one")
    fps = float(meta["fps"]) if meta.get("fps") and math.isfinite(meta["fps"]) else None

    def frames_from(start: int) -> Iterator[np.ndarray]:
        done = start
        try:
            with imageio.get_reader(path, format="FFMPEG") as reader:
                for k, frame in enumerate(reader):
                    if k >= count:
                        break
                    if k >= start:
                        done = k + 1
                        yield np.asarray(frame)  # rgb24: (H, W, 3) uint8
        except (OSError, RuntimeError, ValueError, IndexError) as e:
            raise InputError(f"{where}: cannot read frame {done} ({reason(e)})") from None
        if done < count:
            raise InputError(f"{where}: {done} of its {count} frames could be decoded; "
                             "the file is corrupt or truncated")

    return Clip(path, count, size, fps, frames_from)


# Frames.
def resize_frames(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Frames resized to size x size as the renderer resizes its inputs (bilinear), so a
    side-by-side shows what the model saw."""
    for f in frames:
        yield f if f.shape[:2] == (size, size) else \
            np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR))


def side_by_side(drive: Iterable[np.ndarray], frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Each output frame with its driving frame (resized to it) on the left: (S, 2S, 3), one
    at a time."""
    if hasattr(drive, "__len__") and hasattr(frames, "__len__") and len(drive) != len(frames):
        raise InputError(f"side_by_side: {len(drive)} driving and {len(frames)} output frames; "
                         "expected as many of each")
    return paired(iter(drive), iter(frames))


def paired(drive: Iterator[np.ndarray], frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    for f in frames:
        d = next(drive, None)
        if d is None:
            raise InputError("side_by_side: fewer driving than output frames; expected as many of each")
        yield np.concatenate([next(resize_frames([d], f.shape[0])), f], axis=1)
    if next(drive, None) is not None:
        raise InputError("side_by_side: more driving than output frames; expected as many of each")


# Writing.
def output_kind(path: Path) -> str:
    """The kind of clip to write: "gif", "video", or "folder" (an existing folder, or a name
    with no extension)."""
    ext = path.suffix.lower()
    if path.is_dir() or not ext:
        return "folder"
    if ext == ".gif":
        return "gif"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    raise InputError(f"output {str(path)!r}: unknown clip extension {path.suffix!r}; "
                     f"expected {CLIP_OUTPUTS}")


def check_clip_output(path: str | os.PathLike, overwrite: bool = False) -> str:
    """Validate a clip output and its place before any work; returns its kind (see
    output_kind)."""
    path = Path(path)
    check_name(path, f"output {str(path)!r}")
    kind = output_kind(path)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise InputError(f"output {str(path)!r} is a file; expected a folder name or {CLIP_OUTPUTS}")
    if kind == "folder" and path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"output folder {str(path)!r} exists and is not empty; "
                         "pass --force (overwrite=True) to replace its frames")
    if kind != "folder" and path.exists() and not overwrite:
        raise InputError(f"output {str(path)!r} exists; pass --force (overwrite=True) to replace it")
    check_place(path, directory=kind == "folder")
    if kind == "folder" and path.is_dir():  # its frames are replaced inside it
        try:
            os.remove(temp_beside(path / "frame_0000.png"))
        except OSError as e:
            raise InputError(f"output folder {str(path)!r}: cannot write in it "
                             f"({e.strerror or reason(e)})") from None
    if kind == "video":
        imageio_v2()  # a missing extra fails now, not after the frames are computed
    return kind


def check_fps(fps, kind: str = "gif") -> float:
    """A frame rate the output `kind` can hold (FPS_RANGE), as a float."""
    low, high = FPS_RANGE[kind]
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(fps, bool) or not low <= value <= high:  # nan fails every comparison
        why = " (GIF stores frame durations in 10 ms steps)" if kind == "gif" else ""
        raise InputError(f"fps: got {fps!r}; expected a number from {low:g} to {high:g} "
                         f"for a {kind} output{why}")
    return value


def save_clip(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float | None = None,
              overwrite: bool = False, scale: int = 1) -> Path:
    """Write frames ((H, W, 3) uint8, or any array save_image takes; all of one size) as a GIF
    (looping), a video file (.mp4, ...) or a folder of frame_0000.png, ...; fps None:
    DEFAULT_FPS (as from read_clip of a folder); `scale` upscales them (nearest neighbour).

    `frames` may be any iterable (a list, a Clip, Renderer.animate_iter): each frame is
    written as it comes. The arguments are checked before the first frame is taken, the frame
    size on the first frame; all is written to a temporary file or folder first, so a failure
    (or Ctrl-C) never leaves a partial clip or destroys an existing one. GIF stores 256 colours
    per frame and durations in 10 ms steps (fps is rounded to one)."""
    path = Path(path)
    kind = check_clip_output(path, overwrite)
    fps = check_fps(DEFAULT_FPS if fps is None else fps, kind)
    scale = check_scale(scale)
    images = (array_to_image(np.asarray(f), f"frames[{k}]") for k, f in enumerate(frames))
    first = next(images, None)
    if first is None:
        raise InputError("frames: got none; expected at least one")
    check_scale(scale, first.size)
    if kind == "video" and (first.width * scale % 2 or first.height * scale % 2):
        raise InputError(f"frames[0]: {first.width * scale}x{first.height * scale} pixels; "
                         "expected an even width and height for H.264 video (or write a GIF)")

    def rgb() -> Iterator[Image.Image]:
        for k, im in enumerate(chain([first], images)):
            if im.size != first.size:
                raise InputError(f"frames[{k}]: {im.width}x{im.height} pixels; expected "
                                 f"{first.width}x{first.height} like frames[0]")
            yield upscale(im.convert("RGB"), scale)

    if kind == "folder":
        write_folder(rgb(), path)
        return path
    try:
        with replacing(path) as tmp:
            (write_gif if kind == "gif" else write_video)(rgb(), tmp, fps)
    except OSError as e:  # a full disk, a place that changed since it was checked
        raise InputError(f"output {str(path)!r}: cannot write ({e.strerror or reason(e)})") from None
    return path


def write_gif(images: Iterable[Image.Image], path: Path, fps: float) -> None:
    """A looping GIF, one frame at a time: each with its own 256-colour palette and a duration
    of whole 10 ms steps. (Pillow's own multi-frame writer holds every frame until the end.)"""
    duration = 10 * max(1, round(100 / fps))  # milliseconds
    with open(path, "wb") as fp:
        for k, im in enumerate(images):
            p = im.convert("P", palette=Image.Palette.ADAPTIVE)
            if k == 0:
                header, _ = GifImagePlugin.getheader(p, info={"loop": 0, "duration": duration})
                fp.writelines(header)
            fp.writelines(GifImagePlugin.getdata(p, duration=duration, include_color_table=True))
        fp.write(b";")  # the GIF trailer


def write_video(images: Iterable[Image.Image], path: Path, fps: float) -> None:
    # macro_block_size=1: keep the size (H.264 needs it even: save_clip checks).
    with imageio_v2().get_writer(path, format="FFMPEG", fps=fps, macro_block_size=1) as writer:
        for im in images:
            writer.append_data(np.asarray(im))


def write_folder(images: Iterable[Image.Image], path: Path) -> None:
    """frame_0000.png, ... into `path`, one at a time. An existing folder keeps its other files;
    its old frame_*.png go, so no stale frame of a longer clip remains."""
    tmp = temp_beside(path, directory=True)
    try:
        count = 0
        for count, im in enumerate(images, 1):
            im.save(tmp / f"frame_{count - 1:04d}.png")
        digits = len(str(count - 1))
        if digits > 4:  # over 10,000 frames: widen every name, so that they sort as text too
            for k in range(count):
                os.replace(tmp / f"frame_{k:04d}.png", tmp / f"frame_{k:0{digits}d}.png")
        if not path.exists():
            os.replace(tmp, path)
            return
        for old in path.glob("frame_*.png"):
            old.unlink()
        for new in tmp.iterdir():
            os.replace(new, path / new.name)
    except OSError as e:
        raise InputError(f"output {str(path)!r}: cannot write ({e.strerror or reason(e)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
