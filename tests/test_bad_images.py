"""Images and clips as they come: unusual modes read right, EXIF orientation honoured, array
dtypes checked, and bombs, truncated or corrupt files refused as bad input (InputError; exit 2
from the CLI, one line, nothing written)."""
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eqsdk
from eqsdk.cli import main
from eqsdk.errors import InputError
from eqsdk.images import MAX_PIXELS, open_image, to_array

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHAR, BG = EXAMPLES / "case1" / "char.png", EXAMPLES / "case1" / "bg.png"
DRIVE = EXAMPLES / "drive" / "drive.gif"


def png_bomb(width: int, height: int, whole: bool = False) -> bytes:
    """A small PNG file declaring width x height 8-bit RGB pixels: black, compressed about
    1000:1 when `whole`, else a stub of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte + pixels
    data = b"".join(z.compress(row) for _ in range(height if whole else 1)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def rgb(src, size: int = 8) -> np.ndarray:
    """What the model sees, as 0..255 values: (size, size, 3)."""
    return (to_array(src, size) * 255).round().transpose(1, 2, 0)


# Decompression bombs.
@pytest.mark.parametrize("width, height, says", [
    (60000, 60000, "3,600,000,000 pixels"),  # above Pillow's own limit: refused at open
    (10000, 10000, "10000x10000 = 100,000,000 pixels"),  # between Pillow's limit and eqsdk's
])
def test_a_bomb_is_refused_before_decoding_in_little_memory(width, height, says, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(width, height, whole=width * height <= 10 ** 8))
    assert bomb.stat().st_size < 400_000
    code = ("import resource, sys\n"
            "from eqsdk.errors import InputError\n"
            "from eqsdk.images import to_array\n"
            "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
            "before = peak()\n"
            "try:\n"
            f"    to_array({str(bomb)!r}, 64, 'char')\n"
            "except InputError as e:\n"
            "    print(e)\n"
            "print(peak() - before)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    message, grown_mb = out.stdout.strip().splitlines()
    assert says in message and f"at most {MAX_PIXELS:,}" in message and str(bomb) in message
    assert int(grown_mb) < 20  # decoding would take 300 MB (10000x10000) or 10 GB


def test_cli_refuses_a_bomb_with_exit_2_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "bomb.png").write_bytes(png_bomb(60000, 60000))
    args = ["render", "--char", str(tmp_path / "bomb.png"), "--bg", str(BG), "--anim", str(CHAR),
            str(CHAR), "-o", str(tmp_path / "out.png")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("eqsdk: error: char") and "pixels; expected at most" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png"]


def test_a_large_legal_image_is_read_and_resized(tmp_path):
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[:, 2000:] = 255  # right half white
    Image.fromarray(big).save(tmp_path / "big.png")
    with pytest.warns(eqsdk.images.ResizeWarning, match="from 4000x3000 to 8x8"):
        x = rgb(tmp_path / "big.png")
    assert (x[:, :3] == 0).all() and (x[:, 5:] == 255).all()


# Modes.
def saved(im: Image.Image, path: Path, fmt: str = "PNG") -> Path:
    im.save(path, format=fmt)
    return path


def test_16_bit_grey_png_keeps_its_greys(tmp_path):
    levels = np.arange(0, 256, 4, dtype=np.uint16).reshape(8, 8)  # 0, 4, ..., 252
    path = saved(Image.fromarray(levels * 257), tmp_path / "grey16.png")
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")
    x = rgb(path)
    assert np.array_equal(x[..., 0], levels) and np.array_equal(x[..., 2], levels)


@pytest.mark.parametrize("make, expected", [
    (lambda: Image.fromarray(np.full((8, 8), 128 * 257, np.int32)), 128),  # mode I
    (lambda: Image.fromarray(np.full((8, 8), 0.5, np.float32)), 128),  # mode F, in [0, 1]
    (lambda: Image.new("1", (8, 8), 1), 255),
    (lambda: Image.new("L", (8, 8), 77), 77),
    (lambda: Image.new("LA", (8, 8), (0, 0)), 255),  # transparent: the white behind shows
    (lambda: Image.new("LA", (8, 8), (60, 255)), 60),
    (lambda: Image.new("RGBA", (8, 8), (0, 0, 0, 128)), 127),  # half over white
])
def test_modes_read_as_the_grey_they_show(make, expected):
    x = rgb(make())
    assert np.abs(x - expected).max() <= 1, (x.min(), x.max())


def test_cmyk_and_transparent_palette_files(tmp_path):
    red = rgb(saved(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "c.tif", "TIFF"))
    assert (red == [255, 0, 0]).all()
    p = Image.new("P", (8, 8), 1)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.info["transparency"] = 1  # index 1 (blue) transparent
    p.paste(0, (0, 0, 4, 8))  # left half black, opaque
    x = rgb(saved(p, tmp_path / "p.png"))
    assert (x[:, :4] == 0).all() and (x[:, 4:] == 255).all()


def test_a_float_image_outside_0_1_is_refused():
    with pytest.raises(InputError, match=r"values in \[2, 2\]; expected \[0, 1\]"):
        to_array(Image.fromarray(np.full((8, 8), 2.0, np.float32)), 8)


def test_jpeg_exif_orientation_is_honoured(tmp_path):
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, 40:] = 255  # as stored: left black, right white
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to view
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = open_image(tmp_path / "phone.jpg", "char")
    assert upright.size == (40, 80)  # portrait, as the phone showed it
    with pytest.warns(eqsdk.images.ResizeWarning):
        x = rgb(tmp_path / "phone.jpg")
    assert x[:3].mean() < 20 and x[5:].mean() > 235  # the black half on top


# Arrays.
@pytest.mark.parametrize("array, expected", [
    (np.full((8, 8, 3), 200, np.uint8), 200),
    (np.full((8, 8), 100 * 257, np.uint16), 100),
    (np.ones((8, 8), bool), 255),
    (np.full((8, 8, 1), 0.25, np.float16), 64),
    (np.full((8, 8, 4), 1.0), 255),
])
def test_array_dtypes_accepted(array, expected):
    assert np.abs(rgb(array) - expected).max() <= 1


@pytest.mark.parametrize("array, says", [
    (np.full((8, 8, 3), 200, np.int64), "dtype int64; expected uint8, uint16, bool or float"),
    (np.full((8, 8, 3), 1 + 1j), "dtype complex128"),
    (np.full((8, 8), np.nan), r"float array with no finite value; expected \[0, 1\]"),
    (np.array([[0.5, np.inf]]), r"values in \[0.5, 0.5\] and nan or inf; expected \[0, 1\]"),
    (np.full((8, 8), -0.5), r"values in \[-0.5, -0.5\]"),
    (np.zeros((3, 8, 8), np.uint8), r"channels first\? use a.transpose\(1, 2, 0\)"),
    (np.zeros((0, 8, 3), np.uint8), "expected at least 1x1"),
    (np.zeros((8, 8, 5), np.uint8), "expected HxW, HxWx3 or HxWx4"),
])
def test_array_dtypes_and_shapes_refused(array, says):
    with pytest.raises(InputError, match=says):
        to_array(array, 8)


# Files that are not (whole) images.
def corrupt_files(tmp: Path) -> dict[str, Path]:
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, "PNG")
    data = good.getvalue()
    files = {"truncated.png": data[:len(data) // 2], "empty.png": b"", "zero.png": png_bomb(0, 8),
             "garbled.png": data[:60] + bytes(len(data) - 60), "text.png": b"not a png at all"}
    for name, content in files.items():
        (tmp / name).write_bytes(content)
    return {name: tmp / name for name in files}


@pytest.mark.parametrize("name, says", [
    ("truncated.png", "corrupt or truncated"),
    ("empty.png", "not an image Pillow can read"),
    ("zero.png", "not an image Pillow can read"),  # a header declaring 0x8 pixels
    ("garbled.png", "cannot read"),
    ("text.png", "not an image Pillow can read"),
])
def test_corrupt_image_files_are_input_errors(name, says, tmp_path):
    path = corrupt_files(tmp_path)[name]
    with pytest.raises(InputError, match=says):
        to_array(path, 64, "char")


def test_odd_paths(tmp_path):
    odd = tmp_path / "ünï cødé\tand spaces [1].png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(odd, format="PNG")
    assert (rgb(odd) == [10, 20, 30]).all()
    with pytest.raises(InputError, match="is a directory"):
        to_array(tmp_path, 8)
    os.mkfifo(tmp_path / "pipe.png")  # would block a reader forever
    with pytest.raises(InputError, match="not a regular file"):
        to_array(tmp_path / "pipe.png", 8)
    with pytest.raises(InputError, match="got bytes; expected a path"):
        to_array(b"char.png", 8)
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    for bad, says in (("loop.png", "Too many levels of symbolic links"), ("a\0b.png", "embedded null byte"),
                      ("x" * 300 + ".png", "File name too long")):
        with pytest.raises(InputError, match=f"not a usable path \\({says}\\)"):
            to_array(tmp_path / bad, 8)
        with pytest.raises(InputError, match=f"not a usable path \\({says}\\)"):
            eqsdk.read_clip(tmp_path / bad)


def test_zero_size_and_animated_stills(tmp_path):
    with pytest.raises(InputError, match="image of 0x8 pixels; expected at least 1x1"):
        to_array(Image.new("RGB", (0, 8)), 8)
    frames = [Image.new("RGB", (8, 8), (40 * k, 0, 0)) for k in range(1, 4)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert (rgb(tmp_path / "a.gif")[..., 0] == 40).all()  # an animated still: its first frame


# Clips.
def gif_bytes(n: int = 6) -> bytes:
    rng = np.random.default_rng(1)
    ims = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
    out = io.BytesIO()
    ims[0].save(out, "GIF", save_all=True, append_images=ims[1:], duration=100)
    return out.getvalue()


def mp4_bytes(tmp: Path) -> bytes:
    pytest.importorskip("imageio_ffmpeg")
    eqsdk.save_clip([np.full((32, 32, 3), 20 * k, np.uint8) for k in range(10)], tmp / "whole.mp4", fps=10)
    return (tmp / "whole.mp4").read_bytes()


@pytest.mark.parametrize("name", ["truncated.gif", "truncated.mp4", "text.mp4", "text.gif"])
def test_truncated_or_corrupt_clips_are_input_errors(name, tmp_path):
    data = {"truncated.gif": lambda: gif_bytes()[:-300], "text.gif": lambda: b"GIF89a" + bytes(20),
            "truncated.mp4": lambda: mp4_bytes(tmp_path)[:-500], "text.mp4": lambda: b"not a video"}[name]()
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError, match=r"drive .*(corrupt|truncated|not an image)"):
        clip, _ = eqsdk.read_clip(tmp_path / name)
        list(clip)


def test_a_gif_frame_declaring_a_huge_size_is_an_input_error(tmp_path):
    data = bytearray(gif_bytes(3))
    descriptors = [i for i in range(len(data) - 9) if data[i] == 0x2C and data[i + 5:i + 9] == b"\x20\0\x20\0"]
    data[descriptors[1] + 5:descriptors[1] + 9] = b"\xff\xff\xff\xff"  # frame 1: 65535x65535
    (tmp_path / "huge.gif").write_bytes(data)
    with pytest.raises(InputError, match="drive .*huge.gif'.*pixels"):
        list(eqsdk.read_clip(tmp_path / "huge.gif")[0])


def test_cli_refuses_a_truncated_clip_with_exit_2_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "cut.gif").write_bytes(gif_bytes()[:-300])
    args = ["animate", "--char", str(CHAR), "--drive", str(tmp_path / "cut.gif"), "-o", str(tmp_path / "out.gif")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("eqsdk: error: drive") and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.gif"]


def test_a_folder_frame_that_is_not_an_image_is_found_before_work(tmp_path):
    for k in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"f{k}.png")
    (tmp_path / "f3.png").write_bytes(b"broken")
    with pytest.raises(InputError, match="f3.png' is not an image"):
        eqsdk.read_clip(tmp_path)
