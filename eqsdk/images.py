"""Images in and out: paths, PIL images and arrays to model input; model output to uint8."""
from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from eqsdk.errors import InputError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


class ResizeWarning(UserWarning):
    """An input image was resized to the model's size."""


def open_image(path: str | os.PathLike, name: str) -> Image.Image:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{name} {str(path)!r} is a directory; expected an image file")
    if not path.exists():
        raise InputError(f"{name} {str(path)!r}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except UnidentifiedImageError:
        raise InputError(f"{name} {str(path)!r} is not an image Pillow can read "
                         "(expected PNG, JPEG, GIF, BMP, ...)") from None
    except OSError as e:
        raise InputError(f"{name} {str(path)!r}: cannot read ({e})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparency composited over white; grey and palette images expanded."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    return im.convert("RGB")


def array_to_image(a: np.ndarray, name: str) -> Image.Image:
    """HxW, HxWx3 or HxWx4 arrays, uint8 or float in [0, 1], to a PIL image."""
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InputError(f"{name}: array of shape {a.shape}; expected HxW, HxWx3 or HxWx4")
    if a.dtype == np.uint8:
        data = a
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise InputError(f"{name}: float array with values in "
                             f"[{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]; expected [0, 1]")
        data = (a * 255).round().astype(np.uint8)
    else:
        raise InputError(f"{name}: array of dtype {a.dtype}; expected uint8 or float in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(data))


def to_array(src: ImageLike, size: int, name: str = "image") -> np.ndarray:
    """Model input: float32 (3, size, size) in [0, 1]. Other sizes are resized (with a
    ResizeWarning); RGBA, grey and palette images are converted to RGB."""
    if isinstance(src, (str, os.PathLike)):
        im = open_image(src, name)
    elif isinstance(src, Image.Image):
        im = src
    elif isinstance(src, np.ndarray):
        im = array_to_image(src, name)
    else:
        raise InputError(f"{name}: got {type(src).__name__}; expected a path, a PIL image "
                         "or a numpy array")
    im = to_rgb(im)
    if im.size != (size, size):
        warnings.warn(ResizeWarning(f"{name}: resized from {im.width}x{im.height} to "
                                    f"{size}x{size}, the model's size"), stacklevel=3)
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Model output ([B,] 3, S, S) float -> ([B,] S, S, 3) uint8."""
    return np.moveaxis((np.clip(image, 0, 1) * 255).round().astype(np.uint8), -3, -1)


def check_output(path: Path, overwrite: bool = False) -> str:
    """Validate an output file name before any work; returns Pillow's format for its extension."""
    if path.is_dir():
        raise InputError(f"output {str(path)!r} is a directory; expected a file name")
    if path.exists() and not overwrite:
        raise InputError(f"output {str(path)!r} exists; pass --force (overwrite=True) to replace it")
    if not path.parent.is_dir():
        raise InputError(f"output {str(path)!r}: directory {str(path.parent)!r} does not exist")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise InputError(f"output {str(path)!r}: unknown image extension {path.suffix!r}; "
                         "expected .png, .jpg, .bmp, ...")
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


def save_image(image: np.ndarray, path: str | os.PathLike, overwrite: bool = False,
               scale: int = 1) -> Path:
    """Write an (H, W, 3) uint8 image; the format follows the extension. Written to a temporary
    file first, so a failure never leaves a partial file or destroys an existing one."""
    path = Path(path)
    fmt = check_output(path, overwrite)
    im = Image.fromarray(image)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    tmp = temp_beside(path)
    try:
        im.save(tmp, format=fmt)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
