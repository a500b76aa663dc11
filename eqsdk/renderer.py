"""Composes the graphs: render = g(T^Z(f_c(x_t1), f_c(x_t2)) o f_c(x_c) + f_b(x_b)) (§3).

Each input can be encoded once and reused: a character (f_c), a background (f_b), a motion
(T^Z's theta on a pair of frames, and where the character was). `compose` then re-runs only the
transform-apply and g. Any number of items runs in batches of BATCH, so memory stays flat:
`compose` fills one uint8 output array, `animate_iter` yields frames one at a time. A motion acts
about the moved character's own centre, as it acted about the driving character's. With
check_motion=True, T^Z's reading of a motion is checked by the renderer first (eqsdk.motion_check).
A driving clip's motions can be saved (encode_motion_clip, eqsdk.motion_file) and replayed by
animate without the clip, running the warp and g alone. With reader=True (a bundle with a motion
reader), drive and animate read each driving frame's motion with the reader instead of f_c and
T^Z: the reader, the warp and g run per frame.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice

import numpy as np

from eqsdk import motion_check, motion_file
from eqsdk.errors import BundleError, InputError
from eqsdk.images import ImageLike, ResizeWarning, to_array, to_uint8
from eqsdk.manifest import Manifest
from eqsdk.motion_file import Motion

BATCH = 32  # items per graph call in encode_* and compose: bounds memory, keeps batching's speed


@dataclass(frozen=True)
class Encoding:
    """An encoded input: `data` is the backend's tensor of `count` items (features z), or for a
    motion the host arrays (theta (B, 2, 3), origin (B, 2)). `single` when it was made from one
    image (or pair): composing only single encodings returns one image rather than a batch."""
    kind: str  # "character", "background" or "motion"
    data: object
    count: int
    single: bool

    def __len__(self) -> int:
        return self.count


def is_one_image(x) -> bool:
    """A single image (path, PIL image or array) rather than a sequence or iterator of them."""
    return isinstance(x, (str, bytes)) or not isinstance(x, (Sequence, Iterator))


class Renderer:
    """Renders scenes with a model bundle on a backend (see eqsdk.load)."""

    def __init__(self, backend, manifest: Manifest, load_seconds: float = 0.0, check_motion: bool = False,
                 reader: bool = False):
        self.backend = backend
        self.manifest = manifest
        self.name = manifest.name
        self.image_size = manifest.image_size
        self.load_seconds = load_seconds  # session creation (and engine loading) at eqsdk.load
        # Off by default: the four-graph render. The check is an explicit, slower option.
        self.check_motion = bool(check_motion)
        self.reader = bool(reader)
        if self.reader and "reader" not in manifest.graphs:
            raise BundleError(f"model {manifest.name!r} has no motion reader (reader.onnx); expected "
                              "a bundle with one, or reader=False")
        if self.reader and self.check_motion:
            raise InputError("reader=True and check_motion=True: the check reads the motion with "
                             "f_c and T^Z, which the reader replaces; expected one of them")

    def __repr__(self) -> str:
        s = self.image_size
        check = ", check_motion=True" if self.check_motion else ""
        reader = ", reader=True" if self.reader else ""
        return f"Renderer({self.name!r}, {s}x{s}, backend={self.backend.name!r}{check}{reader})"

    # Images in.
    def _images(self, images: ImageLike | Sequence[ImageLike], name: str) -> np.ndarray:
        """One image or a sequence of them -> float32 (B, 3, S, S) in [0, 1]."""
        return np.concatenate(list(self._batches(images, name)))

    def _batches(self, images: ImageLike | Sequence[ImageLike], name: str,
                size: int = BATCH) -> Iterator[np.ndarray]:
        """One image or a sequence of them, `size` at a time -> float32 (<= size, 3, S, S)."""
        items = [images] if is_one_image(images) else list(images)
        if not items:
            raise InputError(f"{name}: got no images; expected at least one")
        one = is_one_image(images)
        for k in range(0, len(items), max(1, size)):
            yield np.stack([to_array(x, self.image_size, name if one else f"{name}[{k + i}]")
                            for i, x in enumerate(items[k:k + size])])

    # Encoding: pay once per input.
    def encode_character(self, char: ImageLike | Sequence[ImageLike]) -> Encoding:
        """f_c of one image or a sequence of images."""
        return self._encode(char, "char", "f_c", "character")

    def encode_background(self, bg: ImageLike | Sequence[ImageLike]) -> Encoding:
        """f_b of one image or a sequence of images."""
        return self._encode(bg, "bg", "f_b", "background")

    def _encode(self, images: ImageLike | Sequence[ImageLike], name: str, graph: str, kind: str) -> Encoding:
        """`graph` (f_c or f_b) on the images, BATCH at a time: features (N, C, 16, 16) in one tensor."""
        b, single = self.backend, is_one_image(images)
        items = [images] if single else list(images)
        parts = (b.run(graph, x=b.upload(x))["z"] for x in self._batches(images if single else items, name))
        return Encoding(kind, self._gather(parts, len(items)), len(items), single)

    def _gather(self, parts: Iterator, n: int):
        """The batches' features as one tensor of n items. Host arrays are copied into place as
        they come, so the peak is the result and one batch, not twice the result (10,000
        characters' features take 655 MB)."""
        first = next(parts)
        if not isinstance(first, np.ndarray):
            return self.backend.concat([first, *parts])
        out = np.empty((n, *first.shape[1:]), first.dtype)
        start = 0
        for part in chain([first], parts):
            out[start:start + len(part)] = part
            start += len(part)
        return out

    def encode_motion(self, start: ImageLike | Sequence[ImageLike],
                      end: ImageLike | Sequence[ImageLike]) -> Encoding:
        """T^Z's theta for the motion from `start` to `end` (one pair, or two equal-length
        sequences of frames)."""
        x1, x2 = self._images(start, "start"), self._images(end, "end")
        if len(x1) != len(x2):
            raise InputError(f"motion: {len(x1)} start and {len(x2)} end frames; expected as many of each")
        theta, origin = self.motion_arrays(x1, x2)
        return Encoding("motion", (theta, origin), len(theta), is_one_image(start) and is_one_image(end))

    def motion_arrays(self, x_t1: np.ndarray, x_t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """theta (B, 2, 3) and its origin (B, 2) for frames float32 (B, 3, S, S); kept on the
        host (32 bytes a motion)."""
        b = self.backend
        z_t1, z_t2 = b.split(b.run("f_c", x=b.upload(np.concatenate([x_t1, x_t2])))["z"], 2)
        return self._read_motion(z_t1, z_t2, x_t2)

    def _read_motion(self, z_t1, z_t2, x_t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T^Z's theta and origin on the host for the features of the frames, checked against
        the end frame x_t2 (B, 3, S, S) where the renderer checks motions."""
        b = self.backend
        # The t_z graph also applies theta; give it z_t1 as the character, a cheap placeholder.
        out = b.run("t_z", z_t1=z_t1, z_t2=z_t2, z_c=z_t1)
        theta, origin = b.download(out["theta"]), b.download(out["origin"])
        if self.check_motion:
            theta = self._checked_theta(theta, origin, z_t1, z_t2, x_t2)
        return theta, origin

    def _checked_theta(self, theta: np.ndarray, origin: np.ndarray, z_t1, z_t2, x_t2: np.ndarray) -> np.ndarray:
        """eqsdk.motion_check: theta (B, 2, 3), or the turn of it about the character whose render
        of the end frame, g(theta' o z_t1 + f_b(x_t2)), is clearly closer to x_t2. One batch of
        K = 1 + 2 SCAN / STEP candidates per motion through the warp and g graphs."""
        b, n = self.backend, len(theta)
        tries = motion_check.candidates(theta, motion_check.centre(b.download(z_t2)))  # (K, n, 2, 3)
        k = len(tries)
        # origin is centre(z_t1): the warp moves z_t1 about its own centre, as in training.
        z_moved = b.run("warp", theta=b.upload(np.ascontiguousarray(tries.reshape(k * n, 2, 3))),
                        origin=b.upload(np.tile(origin, (k, 1))), z_c=b.concat([z_t1] * k))["z_moved"]
        z_bg = b.run("f_b", x=b.upload(x_t2))["z"]
        renders = b.download(b.run("g", z_char=z_moved, z_bg=b.concat([z_bg] * k))["image"])
        losses = np.square(renders.reshape(k, n, -1) - x_t2.reshape(1, n, -1)).mean(-1)
        return tries[motion_check.choose(losses), np.arange(n)]

    def _moved(self, z_c, z_t1, z_t2, x_t2: np.ndarray):
        """z_c moved as the character moved from z_t1 to z_t2, about its own centre: the t_z graph
        alone, or T^Z's checked theta through the warp graph."""
        b = self.backend
        if not self.check_motion:
            return b.run("t_z", z_t1=z_t1, z_t2=z_t2, z_c=z_c)["z_moved"]
        theta, origin = self._read_motion(z_t1, z_t2, x_t2)
        return b.run("warp", theta=b.upload(theta), origin=b.upload(origin), z_c=z_c)["z_moved"]

    # Composing: only the transform-apply and g run.
    def compose(self, character: Encoding, motion: Encoding, background: Encoding) -> np.ndarray:
        """The encoded character moved by the encoded motion on the encoded background.

        Each may hold 1 or N items (N the same for all that are not 1); ones are broadcast.
        Returns an (S, S, 3) uint8 image if all three are single encodings, else (N, S, S, 3).
        """
        for e, kind in ((character, "character"), (motion, "motion"), (background, "background")):
            if not isinstance(e, Encoding) or e.kind != kind:
                got = e.kind if isinstance(e, Encoding) else type(e).__name__
                raise InputError(f"compose: expected a {kind} encoding (encode_{kind}), got {got}")
        counts = {e.count for e in (character, motion, background)} - {1}
        if len(counts) > 1:
            raise InputError(f"compose: batches of {character.count} characters, {motion.count} "
                             f"motions and {background.count} backgrounds; expected N or 1 each")
        n, s = (counts.pop() if counts else 1), self.image_size
        out = np.empty((n, s, s, 3), np.uint8)
        for k in range(0, n, BATCH):
            stop = min(n, k + BATCH)
            parts = (self._rows(e, k, stop) for e in (character, motion, background))
            out[k:stop] = to_uint8(self.compose_arrays(*parts, stop - k))
        return out[0] if character.single and motion.single and background.single else out

    def _rows(self, e: Encoding, start: int, stop: int) -> Encoding:
        """Items start:stop of an encoding of N; an encoding of one item is shared as it is."""
        if e.count == 1:
            return e
        data = (tuple(a[start:stop] for a in e.data) if e.kind == "motion"
                else self.backend.rows(e.data, start, stop))
        return Encoding(e.kind, data, stop - start, False)

    def compose_arrays(self, character: Encoding, motion: Encoding, background: Encoding,
                       n: int) -> np.ndarray:
        """compose for checked encodings of n or 1 items -> images float32 (n, 3, S, S)."""
        b = self.backend
        theta, origin = (b.upload(np.repeat(a, n // motion.count, axis=0)) for a in motion.data)
        z_moved = b.run("warp", theta=theta, origin=origin,
                        z_c=b.repeat(character.data, n // character.count))["z_moved"]
        return b.download(b.run("g", z_char=z_moved, z_bg=b.repeat(background.data, n // background.count))["image"])

    # One call.
    def render(self, char: ImageLike, bg: ImageLike, anim: Sequence[ImageLike]) -> np.ndarray:
        """The character of `char` on the background of `bg`, moved as the character moved from
        anim[0] to anim[1]. Images: paths, PIL images, HxW / HxWx3 / HxWx4 uint8 arrays or float
        arrays in [0, 1]. Returns an (S, S, 3) uint8 array at the model's size."""
        if isinstance(anim, (str, bytes)) or is_one_image(anim) or len(anim) != 2:
            got = "a single image" if is_one_image(anim) else f"{len(anim)} images"
            raise InputError(f"anim: expected 2 images (start, end of the motion), got {got}")
        x = [self._images(src, name) for src, name in
             ((char, "char"), (anim[0], "anim[0]"), (anim[1], "anim[1]"), (bg, "bg"))]
        return to_uint8(self.render_arrays(*x)[0])

    def render_arrays(self, x_c: np.ndarray, x_t1: np.ndarray, x_t2: np.ndarray,
                      x_b: np.ndarray) -> np.ndarray:
        """Batched h(x_c, x_t1, x_t2, x_b): float32 (B, 3, S, S) in [0, 1] each -> (B, 3, S, S).
        f_c runs once on all three inputs; T^Z computes and applies theta in one graph (unless
        the motion is checked first)."""
        b = self.backend
        if "render" in b.paths and not self.check_motion:  # the same chain, composed into one call
            return b.download(b.run_path("render", x_c=b.upload(x_c), x_t1=b.upload(x_t1),
                                         x_t2=b.upload(x_t2), x_b=b.upload(x_b)))
        z_c, z_t1, z_t2 = b.split(b.run("f_c", x=b.upload(np.concatenate([x_c, x_t1, x_t2])))["z"], 3)
        z_b = b.run("f_b", x=b.upload(x_b))["z"]
        z_moved = self._moved(z_c, z_t1, z_t2, x_t2)
        return b.download(b.run("g", z_char=z_moved, z_bg=z_b)["image"])

    def drive(self, character: Encoding, background: Encoding, start: np.ndarray | Encoding,
              end: np.ndarray) -> np.ndarray:
        """A new motion on a cached character and background: frames float32 (B, 3, S, S) ->
        images (B, 3, S, S). Runs f_c on the frames, T^Z (theta and its apply) and g. `start`
        may be encoded already (encode_character of the reference frame: f_c is the same
        network), as when one reference frame drives a whole clip: then f_c runs on `end` only.
        With the reader, `start` is frames (1 or B) and the reader, the warp and g run."""
        b, n = self.backend, len(end)
        if self.reader and not isinstance(start, Encoding):
            return self._drive_read(character, background, np.repeat(start, n // len(start), axis=0), end)
        if isinstance(start, Encoding):
            z_t1 = b.repeat(start.data, n // start.count)
            if "drive" in b.paths and not self.check_motion:  # the chain below, in one call
                return b.download(b.run_path("drive", z_c=b.repeat(character.data, n // character.count),
                                             z_b=b.repeat(background.data, n // background.count),
                                             z_t1=z_t1, x_t2=b.upload(end)))
            z_t2 = b.run("f_c", x=b.upload(end))["z"]
        else:
            z_t1, z_t2 = b.split(b.run("f_c", x=b.upload(np.concatenate([start, end])))["z"], 2)
        z_moved = self._moved(b.repeat(character.data, n // character.count), z_t1, z_t2, end)
        return b.download(b.run("g", z_char=z_moved, z_bg=b.repeat(background.data, n // background.count))["image"])

    def _drive_read(self, character: Encoding, background: Encoding, start: np.ndarray,
                    end: np.ndarray) -> np.ndarray:
        """drive with the motion reader: the reader's theta and origin from `start` to `end`,
        then the warp and g."""
        b, n = self.backend, len(end)
        z_c, z_b = b.repeat(character.data, n // character.count), b.repeat(background.data, n // background.count)
        x_t1, x_t2 = b.upload(start), b.upload(end)
        if "drive_reader" in b.paths:  # the chain below, in one call
            return b.download(b.run_path("drive_reader", z_c=z_c, z_b=z_b, x_t1=x_t1, x_t2=x_t2))
        motion = b.run("reader", x_t1=x_t1, x_t2=x_t2)
        z_moved = b.run("warp", theta=motion["theta"], origin=motion["origin"], z_c=z_c)["z_moved"]
        return b.download(b.run("g", z_char=z_moved, z_bg=z_b)["image"])

    # A whole sequence.
    def animate(self, char: ImageLike, bg: ImageLike, drive: Iterable[ImageLike] | Motion,
                batch: int = 16, progress=None) -> list[np.ndarray]:
        """Frame k: the character of `char` on `bg`, moved as the driving character moved from
        drive[0] to drive[k] (§3). Returns one (S, S, 3) uint8 frame per driving frame; for
        long clips, animate_iter streams them instead. `drive` may also be a saved Motion
        (encode_motion_clip, eqsdk.load_motion): then only the warp and g run per frame.
        `progress(done, total)` is called after each batch."""
        return list(self.animate_iter(char, bg, drive, batch, progress))

    def animate_iter(self, char: ImageLike, bg: ImageLike, drive: Iterable[ImageLike] | Motion,
                     batch: int = 16, progress=None) -> Iterator[np.ndarray]:
        """animate, one frame at a time: `drive` may be any iterable of images (a list, a Clip
        from read_clip, a generator), read `batch` frames at a time, so a clip of any length
        runs in flat memory, or a Motion of this bundle (else MotionModelError), replayed as it
        was saved (checked or not: Motion.checked). The arguments are checked, and char and bg
        encoded, at the call. `progress(done, total)`: total is None when `drive` has no len()."""
        if isinstance(drive, Motion):
            motion = self.motion_encoding(drive)
            check_batch(batch)
            character, background = self.encode_character(char), self.encode_background(bg)
            return self._replayed(character, background, motion, batch, progress)
        reference, frames, total = self._reference(drive, batch, encoded=not self.reader)
        character, background = self.encode_character(char), self.encode_background(bg)
        return self._frames(character, background, reference, frames, batch, total, progress)

    def _reference(self, drive: Iterable[ImageLike], batch: int, encoded: bool = True
                   ) -> tuple[Encoding | np.ndarray, Iterator, int | None]:
        """A driving clip's first frame encoded (f_c), or as it is (1, 3, S, S) where not
        `encoded`, its frames from the first, and their count (None when `drive` has no len())."""
        check_batch(batch)
        total = 1 if is_one_image(drive) else (len(drive) if hasattr(drive, "__len__") else None)
        frames = iter([drive] if is_one_image(drive) else drive)
        first = next(frames, None)
        if first is None:
            raise InputError("drive: got no frames; expected a sequence of at least one image")
        x0 = self._images(first, "drive[0]")  # says so if the clip gets resized ...
        if not encoded:
            return x0, chain([first], frames), total
        reference = Encoding("character", self.backend.run("f_c", x=self.backend.upload(x0))["z"], 1, True)
        return reference, chain([first], frames), total

    def _driving(self, drive: Iterator[ImageLike], batch: int) -> Iterator[np.ndarray]:
        """The driving frames, `batch` at a time -> float32 (<= batch, 3, S, S)."""
        done = 0
        while part := list(islice(drive, batch)):
            with warnings.catch_warnings():  # ... once, not once per frame
                warnings.simplefilter("ignore", ResizeWarning)
                x = np.stack([to_array(f, self.image_size, f"drive[{done + i}]") for i, f in enumerate(part)])
            yield x
            done += len(part)

    def _frames(self, character: Encoding, background: Encoding, reference: Encoding | np.ndarray,
               drive: Iterator[ImageLike], batch: int, total: int | None, progress) -> Iterator[np.ndarray]:
        done = 0
        for x in self._driving(drive, batch):
            yield from to_uint8(self.drive(character, background, reference, x))
            done += len(x)
            if progress:
                progress(done, total)

    # Saved motions: a driving clip read once, replayed with the warp and g alone.
    def encode_motion_clip(self, drive: Iterable[ImageLike], batch: int = 16, fps: float | None = None,
                           progress=None) -> Motion:
        """What animate applies to each frame of a driving clip, T^Z's theta and origin from the
        first frame to frame k (checked where the renderer checks motions), with this bundle's
        identity: save it with eqsdk.save_motion, replay it with animate(char, bg, motion).
        fps: the clip's frame rate [default: a Clip's own]. At most motion_file.MAX_FRAMES."""
        b, cap = self.backend, motion_file.MAX_FRAMES
        reference, frames, total = self._reference(drive, batch)
        if total is not None and total > cap:
            raise InputError(f"drive: {total:,} frames; expected at most {cap:,} for a motion file")
        thetas, origins, done = [], [], 0
        for x in self._driving(frames, batch):
            if done + len(x) > cap:
                raise InputError(f"drive: more than {cap:,} frames; expected at most {cap:,} for a motion file")
            z_t2 = b.run("f_c", x=b.upload(x))["z"]
            theta, origin = self._read_motion(b.repeat(reference.data, len(x)), z_t2, x)
            thetas.append(theta)
            origins.append(origin)
            done += len(x)
            if progress:
                progress(done, total)
        name, sha256 = motion_file.identity(self.manifest)
        return Motion(np.concatenate(thetas), np.concatenate(origins), name, sha256,
                      getattr(drive, "fps", None) if fps is None else fps, self.check_motion)

    def motion_encoding(self, motion: Motion) -> Encoding:
        """A saved motion as a motion encoding of its N frames, for compose; a motion encoded by
        another bundle raises MotionModelError."""
        if not isinstance(motion, Motion):
            raise InputError(f"motion: got {type(motion).__name__}; expected a Motion "
                             "(encode_motion_clip, eqsdk.load_motion)")
        motion_file.check_model(motion, self.manifest)
        return Encoding("motion", (motion.theta, motion.origin), len(motion), False)

    def _replayed(self, character: Encoding, background: Encoding, motion: Encoding, batch: int,
                  progress) -> Iterator[np.ndarray]:
        for k in range(0, motion.count, batch):
            stop = min(motion.count, k + batch)
            yield from to_uint8(self.compose_arrays(character, self._rows(motion, k, stop), background, stop - k))
            if progress:
                progress(stop, motion.count)

    def warmup(self) -> float:
        """Run every graph once at batch 1 (first-call costs: allocations, kernel choice);
        returns the seconds it took."""
        s = self.image_size
        x = np.zeros((1, 3, s, s), np.float32)
        t0 = time.perf_counter()
        self.render_arrays(x, x, x, x)
        character = self.encode_character(x[0].transpose(1, 2, 0))
        identity = (np.array([[[1, 0, 0], [0, 1, 0]]], np.float32), np.zeros((1, 2), np.float32))
        self.compose(character, Encoding("motion", identity, 1, True),
                     Encoding("background", character.data, 1, True))
        return time.perf_counter() - t0


def check_batch(batch) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch: got {batch!r}; expected a positive integer")
