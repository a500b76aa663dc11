"""Clips in and out: animated GIF/PNG/WebP and folders of frames with Pillow; MP4 and other
video files with imageio's ffmpeg plugin (the optional `video` extra, imported only when used).

A clip is a list of (H, W, 3) uint8 frames and a frame rate (None when the source has none).
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from eqsdk.errors import BackendError, InputError
from eqsdk.images import array_to_image, open_image, temp_beside, to_rgb

DEFAULT_FPS = 10.0
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi")  # those whose default codec (H.264) works
CLIP_OUTPUTS = ".gif, " + ", ".join(VIDEO_EXTENSIONS) + " or a folder name (no extension)"


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
def read_clip(path: str | os.PathLike) -> tuple[list[np.ndarray], float | None]:
    """Frames (H, W, 3) uint8 and frames per second (None if the source has no timing) of an
    animated GIF/PNG/WebP, a video file (.mp4, ...) or a folder of image files, sorted
    naturally."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path), None
    if not path.exists():
        raise InputError(f"drive {str(path)!r}: no such file or folder; expected a GIF, "
                         "a video file or a folder of frames")
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return read_video(path)
    open_image(path, "drive")  # a clear InputError for what Pillow cannot open
    frames, durations = [], []
    try:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                frames.append(np.asarray(to_rgb(frame)))
                durations.append(frame.info.get("duration") or 0)  # milliseconds
    except OSError as e:  # a truncated or corrupt later frame
        raise InputError(f"drive {str(path)!r}: cannot read frame {len(frames)} ({e})") from None
    mean = sum(durations) / len(durations)
    return frames, (1000 / mean if mean > 0 else None)


def read_folder(path: Path) -> list[np.ndarray]:
    image_ext = Image.registered_extensions()
    # Hidden files are skipped: macOS leaves ._frame1.png beside frame1.png on some disks.
    files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                    and p.suffix.lower() in image_ext), key=natural_key)
    if not files:
        raise InputError(f"drive {str(path)!r}: folder has no image files; expected frames "
                         "such as frame_0000.png, frame_0001.png, ...")
    return [np.asarray(to_rgb(open_image(p, "drive frame"))) for p in files]


def read_video(path: Path) -> tuple[list[np.ndarray], float | None]:
    imageio = imageio_v2()
    try:
        with imageio.get_reader(path, format="FFMPEG") as reader:
            fps = reader.get_meta_data().get("fps")
            frames = [np.asarray(f) for f in reader]  # rgb24: (H, W, 3) uint8
    except (OSError, RuntimeError, ValueError) as e:  # imageio's errors for unreadable files
        raise InputError(f"drive {str(path)!r}: cannot read as video "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not frames:
        raise InputError(f"drive {str(path)!r}: video has no frames; expected at least one")
    return frames, (float(fps) if fps else None)


# Frames.
def resize_frames(frames: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """Frames resized to size x size as the renderer resizes its inputs (bilinear), so a
    side-by-side shows what the model saw."""
    return [f if f.shape[:2] == (size, size) else
            np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR))
            for f in frames]


def side_by_side(drive: Sequence[np.ndarray], frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each output frame with its driving frame (resized to it) on the left: (S, 2S, 3)."""
    if len(drive) != len(frames):
        raise InputError(f"side_by_side: {len(drive)} driving and {len(frames)} output frames; "
                         "expected as many of each")
    return [np.concatenate([resize_frames([d], f.shape[0])[0], f], axis=1)
            for d, f in zip(drive, frames)]


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
    """Validate a clip output before any work; returns its kind (see output_kind)."""
    path = Path(path)
    kind = output_kind(path)
    if not path.parent.is_dir():
        raise InputError(f"output {str(path)!r}: directory {str(path.parent)!r} does not exist")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise InputError(f"output {str(path)!r} is a file; expected a folder name or {CLIP_OUTPUTS}")
    if kind == "folder" and path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"output folder {str(path)!r} exists and is not empty; "
                         "pass --force (overwrite=True) to replace its frames")
    if kind != "folder" and path.exists() and not overwrite:
        raise InputError(f"output {str(path)!r} exists; pass --force (overwrite=True) to replace it")
    if kind == "video":
        imageio_v2()  # a missing extra fails now, not after the frames are computed
    return kind


def save_clip(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float | None = None,
              overwrite: bool = False, scale: int = 1) -> Path:
    """Write frames ((H, W, 3) uint8, or float in [0, 1]) as a GIF (looping), a video file
    (.mp4, ...) or a folder of frame_0000.png, ...; fps None: DEFAULT_FPS (as from read_clip of
    a folder); `scale` upscales them (nearest neighbour).

    Written to a temporary file or folder first, so a failure never leaves a partial clip or
    destroys an existing one. GIF stores 256 colours per frame and durations in 10 ms steps,
    and merges identical consecutive frames (playback is the same)."""
    path = Path(path)
    kind = check_clip_output(path, overwrite)
    fps = DEFAULT_FPS if fps is None else fps
    if fps <= 0:
        raise InputError(f"fps: got {fps}; expected a positive number")
    images = [array_to_image(np.asarray(f), f"frames[{k}]") for k, f in enumerate(frames)]
    if not images:
        raise InputError("frames: got none; expected at least one")
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
                  for im in images]
    images = [im.convert("RGB") for im in images]
    if kind == "folder":
        write_folder(images, path)
        return path
    tmp = temp_beside(path)
    try:
        if kind == "gif":
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=round(1000 / fps), loop=0)  # loop=0: forever
        else:
            # macro_block_size=1: keep the size (H.264 needs it even; the model's sizes are).
            imageio_v2().mimwrite(tmp, [np.asarray(im) for im in images], format="FFMPEG",
                                  fps=fps, macro_block_size=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_folder(images: list[Image.Image], path: Path) -> None:
    """frame_0000.png, ... into `path`. An existing folder keeps its other files; its old
    frame_*.png go, so no stale frame of a longer clip remains."""
    digits = max(4, len(str(len(images) - 1)))
    tmp = temp_beside(path, directory=True)
    try:
        for k, im in enumerate(images):
            im.save(tmp / f"frame_{k:0{digits}d}.png")
        if not path.exists():
            os.replace(tmp, path)
            return
        for old in path.glob("frame_*.png"):
            old.unlink()
        for new in tmp.iterdir():
            os.replace(new, path / new.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
