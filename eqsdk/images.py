"""Images in and out: paths, PIL images and arrays to model input; model output to files.

Inputs are checked at this boundary: a file's declared size before it is decoded (MAX_PIXELS),
modes beyond 8-bit RGB (16-bit grey, 1-bit, CMYK, palette, alpha), EXIF orientation, array
dtypes. Outputs are checked before any work: the extension, the place (a temporary file is made
and removed beside the output), `scale` and the pixels it makes (MAX_OUTPUT_PIXELS).
"""
from __future__ import annotations

import numbers
import os
import re
import secrets
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from eqsdk.errors import EqsdkError, InputError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

MAX_PIXELS = 8192 * 8192  # an input's declared width x height; above it, refused undecoded
MAX_SCALE = 32
MAX_OUTPUT_PIXELS = 4096 * 4096  # an output image or clip frame after `scale`
# What Pillow raises on a corrupt or truncated file: OSError, and more from its parsers.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                 struct.error, zlib.error, Image.DecompressionBombError)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ResizeWarning(UserWarning):
    """An input image was resized to the model's size."""


# Reading.
def check_pixels(size: tuple[int, int], where: str) -> None:
    """Refuse an image declaring no pixels, or more than MAX_PIXELS (a decompression bomb)."""
    w, h = size
    if w < 1 or h < 1:
        raise InputError(f"{where}: image of {w}x{h} pixels; expected at least 1x1")
    if w * h > MAX_PIXELS:
        raise InputError(f"{where}: image declares {w}x{h} = {w * h:,} pixels; expected at most "
                         f"{MAX_PIXELS:,} (8192x8192): downscale it first")


@contextmanager
def opened(path: str | os.PathLike, name: str) -> Iterator[Image.Image]:
    """Pillow's lazy image of a file, its declared size checked and nothing decoded yet.
    Decoding errors inside the block become an InputError naming the file."""
    path = Path(path)
    where = f"{name} {str(path)!r}"
    check_name(path, where)
    if path.is_dir():
        raise InputError(f"{where} is a directory; expected an image file")
    if not path.exists():
        raise InputError(f"{where}: no such file")
    if not path.is_file():
        raise InputError(f"{where} is not a regular file; expected an image file")
    try:
        with warnings.catch_warnings():  # the size is checked below, against MAX_PIXELS
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError:
        raise InputError(f"{where} is not an image Pillow can read "
                         "(expected PNG, JPEG, GIF, BMP, ...)") from None
    except Image.DecompressionBombError as e:  # over Pillow's own limit, far above ours
        declared = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(declared[1]):,} pixels" if declared else "more pixels than Pillow allows"
        raise InputError(f"{where}: image declares {pixels}; expected at most {MAX_PIXELS:,} "
                         "(8192x8192): downscale it first") from None
    except DECODE_ERRORS as e:
        raise InputError(f"{where}: cannot read ({reason(e)})") from None
    with im:
        check_pixels(im.size, where)
        try:
            yield im
        except EqsdkError:
            raise
        except DECODE_ERRORS as e:
            raise InputError(f"{where}: cannot read, the file is corrupt or truncated "
                             f"({reason(e)})") from None


def reason(e: BaseException) -> str:
    """One line on why a library call failed (an OSError's reason without the file name)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).splitlines()[0] if str(e) else ""
    return text or type(e).__name__


def check_name(path: Path, where: str) -> None:
    """Refuse a path the system cannot look up (a NUL byte, a name too long, a loop of links)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # a missing file is the caller's to report
    except (OSError, ValueError) as e:
        raise InputError(f"{where}: not a usable path ({reason(e)})") from None


def open_image(path: str | os.PathLike, name: str) -> Image.Image:
    """A still image from a file, decoded and turned upright (EXIF orientation); an animated
    file gives its first frame."""
    with opened(path, name) as im:
        im.load()
        return upright(im)


def upright(im: Image.Image) -> Image.Image:
    """The image as it is meant to be seen: phones store photos sideways with an EXIF
    Orientation tag. The tag is removed from the result, so applying this twice is harmless."""
    return ImageOps.exif_transpose(im)


def to_rgb(im: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB, with transparency composited over white. 16-bit grey (modes I;16 and I, as
    Pillow reads 16-bit PNG) is scaled from 0..65535; float images (mode F) must lie in [0, 1]
    like float arrays."""
    check_pixels(im.size, name)
    if im.mode in SIXTEEN_BIT_MODES:
        im = Image.fromarray(grey16_to_uint8(np.asarray(im)))
    elif im.mode == "F":
        im = array_to_image(np.asarray(im), name)
    if im.has_transparency_data:
        try:
            im = im.convert("RGBA")
        except ValueError:
            raise InputError(f"{name}: image mode {im.mode!r} cannot be read; expected RGB, "
                             "RGBA, grey, palette or CMYK") from None
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError:
        raise InputError(f"{name}: image mode {im.mode!r} cannot be read; expected RGB, RGBA, "
                         "grey, palette or CMYK") from None


def grey16_to_uint8(a: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (v * 257, as 8-bit data widened to 16 bits, maps back to v)."""
    return ((np.clip(a, 0, 65535).astype(np.uint32) + 128) // 257).astype(np.uint8)


def array_to_image(a: np.ndarray, name: str) -> Image.Image:
    """HxW, HxWx1, HxWx3 or HxWx4 arrays to a PIL image. dtypes: uint8 (0..255), uint16
    (0..65535, as 16-bit PNG), bool (False black, True white), float in [0, 1]."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        hint = " (channels first? use a.transpose(1, 2, 0))" if a.ndim == 3 and a.shape[0] in (1, 3, 4) else ""
        raise InputError(f"{name}: array of shape {a.shape}; expected HxW, HxWx3 or HxWx4{hint}")
    if a.size == 0:
        raise InputError(f"{name}: array of shape {a.shape}; expected at least 1x1 pixels")
    if a.dtype == np.uint8:
        data = a
    elif a.dtype == np.uint16:
        data = grey16_to_uint8(a)
    elif a.dtype == np.bool_:
        data = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        if not finite.all() or a.min() < 0 or a.max() > 1:
            values = a[finite]
            got = f"values in [{values.min():.3g}, {values.max():.3g}]" if values.size else "no finite value"
            got += "" if finite.all() or not values.size else " and nan or inf"
            raise InputError(f"{name}: float array with {got}; expected [0, 1]")
        data = (a.astype(np.float32) * 255).round().astype(np.uint8)
    else:
        raise InputError(f"{name}: array of dtype {a.dtype}; expected uint8, uint16, bool or float "
                         "in [0, 1] (for 0..255 integers: a.astype(np.uint8))")
    return Image.fromarray(np.ascontiguousarray(data))


def to_array(src: ImageLike, size: int, name: str = "image") -> np.ndarray:
    """Model input: float32 (3, size, size) in [0, 1]. Other sizes are resized (with a
    ResizeWarning); other modes are converted to RGB (see to_rgb)."""
    if isinstance(src, np.ndarray) and src.dtype == np.uint8 and src.shape == (size, size, 3):
        # Already what the model takes: skip the round trip through PIL (0.09 ms an image, a
        # fifth of a batch-1 render on a fast backend). The same values as the path below.
        return src.transpose(2, 0, 1).astype(np.float32) / 255
    if isinstance(src, (str, os.PathLike)):
        im = open_image(src, name)
    elif isinstance(src, Image.Image):
        check_pixels(src.size, name)  # a lazily opened file is decoded here
        try:
            im = upright(src)
        except EqsdkError:
            raise
        except DECODE_ERRORS as e:
            raise InputError(f"{name}: cannot read the PIL image ({reason(e)})") from None
    elif isinstance(src, np.ndarray):
        im = array_to_image(src, name)
    else:
        raise InputError(f"{name}: got {type(src).__name__}; expected a path, a PIL image "
                         "or a numpy array")
    im = to_rgb(im, name)
    if im.size != (size, size):
        warnings.warn(ResizeWarning(f"{name}: resized from {im.width}x{im.height} to "
                                    f"{size}x{size}, the model's size"), stacklevel=3)
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Model output ([B,] 3, S, S) float -> ([B,] S, S, 3) uint8."""
    return np.moveaxis((np.clip(image, 0, 1) * 255).round().astype(np.uint8), -3, -1)


# Writing.
def check_scale(scale, size: tuple[int, int] | None = None) -> int:
    """`scale` as an int in 1..MAX_SCALE; with the (width, height) it multiplies, also the
    output's pixels bounded by MAX_OUTPUT_PIXELS."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or not 1 <= scale <= MAX_SCALE:
        raise InputError(f"scale: got {scale!r}; expected an integer from 1 to {MAX_SCALE}")
    scale = int(scale)
    if size is not None:
        w, h = size[0] * scale, size[1] * scale
        if w * h > MAX_OUTPUT_PIXELS:
            raise InputError(f"scale {scale}: {size[0]}x{size[1]} pixels become {w}x{h} = "
                             f"{w * h:,}; expected at most {MAX_OUTPUT_PIXELS:,} (4096x4096)")
    return scale


def upscale(im: Image.Image, scale: int) -> Image.Image:
    """Nearest-neighbour upscaling, for viewing: every pixel becomes a scale x scale block."""
    return im if scale == 1 else im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)


def check_place(path: Path, directory: bool = False) -> None:
    """An output can be written where it is to go: its directory exists and takes a new file
    (tried for real: a temporary file is made and removed, which also finds read-only file
    systems and places that stop root), and an existing output can be replaced."""
    parent = path.parent
    if not parent.exists():
        raise InputError(f"output {str(path)!r}: directory {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise InputError(f"output {str(path)!r}: {str(parent)!r} is a file, not a directory")
    try:
        probe = temp_beside(path, directory)
    except OSError as e:
        raise InputError(f"output {str(path)!r}: cannot write in {str(parent)!r} "
                         f"({e.strerror or reason(e)})") from None
    (os.rmdir if directory else os.remove)(probe)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"output {str(path)!r} is read-only; expected a "
                         f"{'folder' if directory else 'file'} that can be replaced")


def check_output(path: Path, overwrite: bool = False) -> str:
    """Validate an output file name and place before any work; returns Pillow's format for its
    extension."""
    path = Path(path)
    check_name(path, f"output {str(path)!r}")
    if path.is_dir():
        raise InputError(f"output {str(path)!r} is a directory; expected a file name")
    if path.exists() and not overwrite:
        raise InputError(f"output {str(path)!r} exists; pass --force (overwrite=True) to replace it")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise InputError(f"output {str(path)!r}: unknown image extension {path.suffix!r}; "
                         "expected .png, .jpg, .bmp, ...")
    try:  # some formats Pillow knows cannot hold an RGB image (.xbm, ...)
        Image.new("RGB", (1, 1)).save(BytesIO(), format=fmt)
    except DECODE_ERRORS:
        raise InputError(f"output {str(path)!r}: {fmt} cannot hold an RGB image; "
                         "expected .png, .jpg, .bmp, ...") from None
    check_place(path)
    return fmt


def temp_beside(path: Path, directory: bool = False) -> Path:
    """A new empty file (or folder) next to `path`, to write and then os.replace onto it. Made
    with the permissions a plain open() or mkdir() would give (the umask applies), unlike
    tempfile's private 0600 files."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{'' if directory else path.suffix}"
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise OSError(f"cannot create a temporary file beside {path}")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Atomic writing, said once: a temporary file beside `path` to write in the block; renamed
    onto `path` when the block ends, removed when it raises (or the process is interrupted)."""
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def save_image(image: np.ndarray, path: str | os.PathLike, overwrite: bool = False,
               scale: int = 1) -> Path:
    """Write an image ((H, W, 3) uint8, or any array `to_array` takes); the format follows the
    extension. Everything is checked before writing, and it is written to a temporary file
    first, so a failure never leaves a partial file or destroys an existing one."""
    path = Path(path)
    im = array_to_image(np.asarray(image), "image")
    scale = check_scale(scale, im.size)
    fmt = check_output(path, overwrite)
    try:
        with replacing(path) as tmp:
            upscale(im.convert("RGB"), scale).save(tmp, format=fmt)
    except OSError as e:  # a full disk, a place that changed since it was checked
        raise InputError(f"output {str(path)!r}: cannot write ({e.strerror or reason(e)})") from None
    return path
