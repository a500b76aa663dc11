"""Saved motions: a driving clip's motions in a small JSON file (.eqm), replayed without the clip.

Frame k of an animation moves the character as the driving character moved from the clip's
first frame to frame k (§3): T^Z's theta (2, 3) read on f_c of those two frames, relative to
origin (2,), the centre of the first frame's character (eqsdk.graphs: the `warp` graph's
inputs). A Motion holds them for every frame, so `Renderer.animate(char, bg, motion)` runs only
the warp and g per frame, with the renders of the live animation.

The file is UTF-8 JSON, one object with exactly these keys:

    format   "eqsdk-motion"
    version  1
    model    {"name": the bundle's manifest name,
              "sha256": {"f_c": ..., "t_z": ...}}: the graphs that read theta; a renderer whose
              graphs differ refuses the motion (MotionModelError)
    checked  true when theta was checked by eqsdk.motion_check (Renderer check_motion=True)
    frames   N, 1 to MAX_FRAMES
    fps      the driving clip's frames per second (a positive number), or null when it had no timing
    theta    N x 2 x 3 numbers: theta[k] maps output to input coordinates (as grid_sample)
    origin   N x 2 numbers: (x, y) in [-1, 1], the point theta[k] acts about

Numbers are the float32 values written as JSON's shortest float64 text, which reads back to the
same float32: a saved motion replays exactly. Reading checks all of it (format, version, keys,
shapes, finite numbers, a size cap before parsing) and raises MotionFileError naming the file,
the key, what was received and what was expected.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from eqsdk.errors import InputError
from eqsdk.images import check_name, check_place, reason, replacing

FORMAT = "eqsdk-motion"
VERSION = 1
EXTENSION = ".eqm"
IDENTITY_GRAPHS = ("f_c", "t_z")  # theta = T^Z(f_c(x_1), f_c(x_k)): what it depends on
MAX_FRAMES = 30_000  # 50 minutes at 10 fps; a file's arrays stay under 1 MB in memory
MAX_BYTES = 8 << 20  # a file of MAX_FRAMES takes about 6 MB; larger is refused unparsed
KEYS = ("format", "version", "model", "checked", "frames", "fps", "theta", "origin")


class MotionFileError(InputError):
    """A motion file (or Motion) is not one eqsdk can read: corrupt, truncated, too large, of
    another format or version, or with values out of shape or range."""


class MotionModelError(InputError):
    """A motion was encoded by another model bundle than the renderer's: its thetas belong to
    that bundle's f_c and T^Z. `model` names the bundle that encoded it."""

    def __init__(self, message: str, model: str):
        super().__init__(message)
        self.model = model


@dataclass(frozen=True, eq=False)
class Motion:
    """A driving clip's motions: frame k moves a character as the driving character moved
    from frame 0 to frame k. Made by Renderer.encode_motion_clip or load_motion."""
    theta: np.ndarray  # (N, 2, 3) float32, output -> input coordinates
    origin: np.ndarray  # (N, 2) float32: the centre of the first frame's character
    model: str  # the manifest name of the bundle that encoded it
    sha256: Mapping[str, str]  # IDENTITY_GRAPHS -> sha256 of that bundle's graph files
    fps: float | None = None
    checked: bool = False  # theta checked by eqsdk.motion_check
    source: str | None = None  # the file it was loaded from, for messages

    def __post_init__(self):
        where = f"motion {self.source!r}" if self.source else "motion"
        try:
            theta = np.ascontiguousarray(self.theta, np.float32)
            origin = np.ascontiguousarray(self.origin, np.float32)
            sha256 = MappingProxyType(dict(self.sha256))
        except (TypeError, ValueError) as e:
            raise MotionFileError(f"{where}: {reason(e)}; expected theta and origin arrays of "
                                  "numbers and a mapping of sha256") from None
        for a in (theta, origin):
            a.setflags(write=False)  # shared by every replay: read-only, like the dataclass
        object.__setattr__(self, "theta", theta)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "sha256", sha256)
        check(self, where)

    def __len__(self) -> int:
        return len(self.theta)

    def __repr__(self) -> str:
        fps = "" if self.fps is None else f", {self.fps:g} fps"
        return f"Motion({len(self)} frames{fps}, model {self.model!r}{', checked' if self.checked else ''})"

    def to_json(self) -> dict:
        """The JSON object of the file (see the module docstring)."""
        return {"format": FORMAT, "version": VERSION,
                "model": {"name": self.model, "sha256": dict(self.sha256)},
                "checked": self.checked, "frames": len(self), "fps": self.fps,
                # float32 -> float64 is exact, and json writes float64's round-tripping text
                "theta": self.theta.astype(np.float64).tolist(),
                "origin": self.origin.astype(np.float64).tolist()}


def identity(manifest) -> tuple[str, dict[str, str]]:
    """A bundle's (name, {graph: sha256}) for IDENTITY_GRAPHS, from its eqsdk.manifest.Manifest."""
    return manifest.name, {g: manifest.graphs[g].sha256 for g in IDENTITY_GRAPHS}


def check_model(motion: Motion, manifest) -> None:
    """Refuse a motion encoded by another bundle than `manifest`'s (MotionModelError)."""
    name, sha = identity(manifest)
    if dict(motion.sha256) == sha:
        return
    where = f"motion {motion.source!r}" if motion.source else "motion"
    graphs = lambda d: ", ".join(f"{g} {d[g][:12]}…" for g in IDENTITY_GRAPHS)  # noqa: E731
    raise MotionModelError(f"{where}: encoded by the model {motion.model!r} ({graphs(motion.sha256)}), "
                           f"not by this renderer's {name!r} ({graphs(sha)}); expected a motion of "
                           f"this model: use the model {motion.model!r}, or encode the clip again with "
                           f"{name!r}", motion.model)


# Checks, shared by Motion and the file reader.
def check(motion: Motion, where: str) -> None:
    shape = motion.theta.shape
    n = shape[0] if shape else 0
    if shape[1:] != (2, 3) or not 1 <= n <= MAX_FRAMES:
        raise MotionFileError(f"{where}: theta of shape {motion.theta.shape}; expected (N, 2, 3) "
                              f"with N from 1 to {MAX_FRAMES:,}")
    if motion.origin.shape != (n, 2):
        raise MotionFileError(f"{where}: origin of shape {motion.origin.shape}; expected ({n}, 2)")
    for key, a in (("theta", motion.theta), ("origin", motion.origin)):
        if not np.isfinite(a).all():  # also float64 values beyond float32's range
            raise MotionFileError(f"{where}: {key} has nan or inf; expected finite float32 values")
    if not isinstance(motion.model, str) or not motion.model:
        raise MotionFileError(f"{where}: model {motion.model!r}; expected a bundle's name")
    if set(motion.sha256) != set(IDENTITY_GRAPHS) or not all(
            isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)
            for s in motion.sha256.values()):
        raise MotionFileError(f"{where}: sha256 {dict(motion.sha256)!r}; expected 64 lowercase hex "
                              f"digits for each of {', '.join(IDENTITY_GRAPHS)}")
    fps = motion.fps
    if fps is not None and not (is_number(fps) and fps > 0):
        raise MotionFileError(f"{where}: fps {fps!r}; expected None or a positive number")
    if not isinstance(motion.checked, bool):
        raise MotionFileError(f"{where}: checked {motion.checked!r}; expected true or false")


# Writing.
def check_motion_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate a motion file's name and place before any work."""
    path = Path(path)
    check_name(path, f"output {str(path)!r}")
    if path.suffix.lower() != EXTENSION:
        raise InputError(f"output {str(path)!r}: extension {path.suffix or 'none'!r}; expected a "
                         f"motion file name ending in {EXTENSION}")
    if path.is_dir():
        raise InputError(f"output {str(path)!r} is a directory; expected a file name")
    if path.exists() and not overwrite:
        raise InputError(f"output {str(path)!r} exists; pass --force (overwrite=True) to replace it")
    check_place(path)
    return path


def save_motion(motion: Motion, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a Motion as a .eqm file: checked first, written to a temporary file and renamed, so
    a failure never leaves a partial file or destroys an existing one."""
    if not isinstance(motion, Motion):
        raise InputError(f"motion: got {type(motion).__name__}; expected a Motion "
                         "(Renderer.encode_motion_clip or load_motion)")
    path = check_motion_output(path, overwrite)
    text = json.dumps(motion.to_json(), separators=(",", ":"), allow_nan=False) + "\n"
    try:
        with replacing(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:  # a full disk, a place that changed since it was checked
        raise InputError(f"output {str(path)!r}: cannot write ({e.strerror or reason(e)})") from None
    return path


# Reading.
def load_motion(path: str | os.PathLike) -> Motion:
    """A Motion from a .eqm file, every field checked (MotionFileError). Which model it belongs
    to is checked where it is used (Renderer.animate: MotionModelError)."""
    path = Path(path)
    where = f"motion {str(path)!r}"
    check_name(path, where)
    if not path.exists():
        raise MotionFileError(f"{where}: no such file; expected a motion file ({EXTENSION}) "
                              "written by eqsdk encode-motion")
    if not path.is_file():  # a folder, a FIFO, a device: nothing to read a size from
        raise MotionFileError(f"{where} is not a regular file; expected a motion file ({EXTENSION})")
    try:
        with open(path, "rb") as fp:
            data = fp.read(MAX_BYTES + 1)  # a file growing since its size was read stops here
    except OSError as e:
        raise MotionFileError(f"{where}: cannot read ({e.strerror or reason(e)})") from None
    if len(data) > MAX_BYTES:
        raise MotionFileError(f"{where}: more than {MAX_BYTES:,} bytes; expected a motion file of "
                              f"at most {MAX_BYTES:,} ({MAX_FRAMES:,} frames)")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MotionFileError(f"{where}: cannot be parsed as UTF-8 JSON, corrupt or truncated "
                              f"({reason(e)}); expected a motion file written by eqsdk "
                              "encode-motion") from None
    return parse(obj, path)


def refuse_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def parse(obj, path: Path) -> Motion:
    """The Motion of the JSON object read from the file `path`."""
    where = f"motion {str(path)!r}"
    if not isinstance(obj, dict):
        raise MotionFileError(f"{where}: {kind(obj)}; expected a JSON object with format {FORMAT!r}")
    if obj.get("format") != FORMAT:
        raise MotionFileError(f"{where}: format {short(obj.get('format'))}; expected {FORMAT!r}")
    version = obj.get("version")
    if not is_int(version) or version < 1:
        raise MotionFileError(f"{where}: version {short(version)}; expected {VERSION}")
    if version > VERSION:
        raise MotionFileError(f"{where}: version {version}, of a newer eqsdk (this one reads "
                              f"{VERSION}); upgrade eqsdk")
    keys = set(obj)
    if keys != set(KEYS):
        extra, missing = sorted(keys - set(KEYS)), [k for k in KEYS if k not in keys]
        got = f"missing key {missing[0]!r}" if missing else f"unknown key {extra[0]!r}"
        raise MotionFileError(f"{where}: {got}; expected the keys {', '.join(KEYS)}")
    model = obj["model"]
    if not isinstance(model, dict) or set(model) != {"name", "sha256"} or not isinstance(model["sha256"], dict):
        raise MotionFileError(f"{where}: key 'model': {short(model)}; expected "
                              '{"name": ..., "sha256": {"f_c": ..., "t_z": ...}}')
    if not isinstance(model["name"], str) or not 0 < len(model["name"]) <= 200:
        raise MotionFileError(f"{where}: key 'model.name': {short(model['name'])}; expected a "
                              "bundle's name")
    n = obj["frames"]
    if not is_int(n) or not 1 <= n <= MAX_FRAMES:
        raise MotionFileError(f"{where}: key 'frames': {short(n)}; expected an integer from 1 "
                              f"to {MAX_FRAMES:,}")
    theta = numbers(obj["theta"], (n, 2, 3), "theta", where)
    origin = numbers(obj["origin"], (n, 2), "origin", where)
    fps = obj["fps"]
    if fps is not None and not (is_number(fps) and fps > 0):
        raise MotionFileError(f"{where}: key 'fps': {short(fps)}; expected null or a positive number")
    if not isinstance(obj["checked"], bool):
        raise MotionFileError(f"{where}: key 'checked': {short(obj['checked'])}; expected true or false")
    return Motion(theta, origin, model["name"], model["sha256"], None if fps is None else float(fps),
                  obj["checked"], source=str(path))


def numbers(value, shape: tuple[int, ...], key: str, where: str) -> np.ndarray:
    """A nested JSON list of numbers of exactly `shape` -> float32 array (finite: Motion checks)."""
    flat: list = []

    def walk(v, depth: int, at: str) -> None:
        if depth == len(shape):
            if not is_number(v):
                raise MotionFileError(f"{where}: key {at!r}: {short(v)}; expected a finite number")
            flat.append(v)
            return
        if not isinstance(v, list) or len(v) != shape[depth]:
            got = f"a list of {len(v)}" if isinstance(v, list) else kind(v)
            raise MotionFileError(f"{where}: key {at!r}: {got}; expected a list of {shape[depth]} "
                                  f"({key} has shape {shape})")
        for i, item in enumerate(v):
            walk(item, depth + 1, f"{at}[{i}]")

    walk(value, 0, key)
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused by Motion
        return np.array(flat, np.float64).astype(np.float32).reshape(shape)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A finite JSON number (json reads 1e400 as inf, and 10**400 as an int no float holds)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")


def short(v) -> str:
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
