"""Outputs: a place that cannot be written, an fps or a scale out of bounds are refused before any
work, naming the user's path; a run killed by SIGTERM or SIGINT leaves no temporary file.

Tests run as root here, and permission bits do not stop root, so the unwritable places are ones
that stop root too: an immutable directory or file (chattr +i) where root may set it, else
permission bits; /sys; a read-only file system mounted in a private user namespace (unshare).
"""
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eqsdk
from eqsdk.cli import main
from eqsdk.errors import InputError
from tests.processes import interruptible

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHAR, BG = EXAMPLES / "case1" / "char.png", EXAMPLES / "case1" / "bg.png"
DRIVE = EXAMPLES / "drive" / "drive.gif"
FRAMES = [np.full((8, 8, 3), 30 * k, np.uint8) for k in range(3)]


def lock(path: Path):
    """Make `path` unwritable even for root: immutable (chattr +i) as root, else read-only
    permission bits. Returns the function that unlocks it."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        return lambda: path.chmod(mode)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)],
                                                       capture_output=True).returncode:
        pytest.skip("root here cannot make a file immutable (chattr +i)")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def locked_dir(tmp_path):
    d = tmp_path / "locked"
    d.mkdir()
    unlock = lock(d)
    yield d
    unlock()


@pytest.fixture
def locked_file(tmp_path):
    f = tmp_path / "keep.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(f)
    unlock = lock(f)
    yield f
    unlock()


def never_read():
    """Frames that fail the test if save_clip takes one: its checks come first."""
    raise AssertionError("a frame was taken before the arguments were checked")
    yield


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# Places.
def test_api_refuses_a_locked_directory_before_work(locked_dir):
    for save in (lambda p: eqsdk.save_image(FRAMES[0], p / "out.png"),
                 lambda p: eqsdk.save_clip(never_read(), p / "out.gif"),
                 lambda p: eqsdk.save_clip(never_read(), p / "frames")):
        with pytest.raises(InputError, match=f"output '{locked_dir}/.*': cannot write in '{locked_dir}'"):
            save(locked_dir)
    with pytest.raises(InputError, match=f"output '{locked_dir}' is read-only; expected a folder"):
        eqsdk.save_clip(never_read(), locked_dir, overwrite=True)  # frames into the folder itself
    assert listing(locked_dir) == []


def test_api_refuses_a_locked_file_even_with_overwrite(locked_file):
    with pytest.raises(InputError, match=f"output '{locked_file}' is read-only"):
        eqsdk.save_image(FRAMES[0], locked_file, overwrite=True)
    assert np.asarray(Image.open(locked_file))[0, 0].tolist() == [1, 2, 3]


def test_parent_that_is_a_file_and_sys(tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(InputError, match="notes.txt' is a file, not a directory"):
        eqsdk.save_image(FRAMES[0], tmp_path / "notes.txt" / "out.png")
    if Path("/sys").is_dir():  # sysfs takes no new file, not even from root
        with pytest.raises(InputError, match="output '/sys/eqsdk-out.gif': cannot write in '/sys'"):
            eqsdk.save_clip(never_read(), "/sys/eqsdk-out.gif")


@pytest.mark.parametrize("name, says", [("o\0.png", "embedded null byte"), ("y" * 300 + ".gif", "File name too long")])
def test_an_output_name_the_system_cannot_take(name, says, tmp_path):
    save = eqsdk.save_image if name.endswith(".png") else eqsdk.save_clip
    with pytest.raises(InputError, match=f"not a usable path \\({says}\\)"):
        save(FRAMES[0] if save is eqsdk.save_image else never_read(), tmp_path / name)
    assert listing(tmp_path) == []


def test_an_extension_pillow_cannot_write_rgb_to(tmp_path):
    with pytest.raises(InputError, match="cannot hold an RGB image"):
        eqsdk.save_image(FRAMES[0], tmp_path / "out.xbm")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("command", ["render", "animate"])
def test_cli_checks_the_output_place_first_with_exit_2(command, locked_dir, capsys):
    out = locked_dir / ("out.png" if command == "render" else "out.gif")
    missing = str(locked_dir.parent / "missing.png")  # the inputs are bad too: the output is checked first
    args = (["render", "--char", missing, "--bg", str(BG), "--anim", str(CHAR), str(CHAR)]
            if command == "render" else ["animate", "--char", missing, "--drive", missing])
    assert main([*args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eqsdk: error: output '{out}': cannot write in '{locked_dir}'")
    assert len(err.strip().splitlines()) == 1 and f"{locked_dir}/." not in err  # no temporary name
    assert listing(locked_dir) == []


def test_cli_on_a_read_only_file_system(tmp_path):
    """A real read-only mount, private to one process (a user namespace: no root needed)."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(tmp_path)],
            capture_output=True).returncode:
        pytest.skip("cannot mount a private read-only file system here (unshare -rm)")
    script = (f"mount -t tmpfs -o ro tmpfs {tmp_path} && exec {sys.executable} -m eqsdk render "
              f"--char {CHAR} --bg {BG} --anim {CHAR} {CHAR} -o {tmp_path}/out.png")
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr == (f"eqsdk: error: output '{tmp_path}/out.png': cannot write in '{tmp_path}' "
                          "(Read-only file system)\n")


def test_a_full_disk_is_bad_input_and_leaves_nothing(tmp_path):
    """A 64 KiB file system, private to one process: the clip does not fit."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tmp_path)],
            capture_output=True).returncode:
        pytest.skip("cannot mount a private file system here (unshare -rm)")
    code = ("import os, sys, numpy as np, eqsdk\n"
            "frames = np.random.default_rng(0).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)\n"
            "try:\n"
            f"    eqsdk.save_clip(frames, {str(tmp_path / 'out.gif')!r})\n"
            "except eqsdk.InputError as e:\n"
            "    print(e)\n"
            f"print(os.listdir({str(tmp_path)!r}))\n")
    script = f"mount -t tmpfs -o size=64k tmpfs {tmp_path} && exec {sys.executable} -c \"$0\""
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script, code], capture_output=True, text=True, timeout=120)
    assert run.stdout.splitlines() == [f"output '{tmp_path}/out.gif': cannot write (No space left on device)", "[]"], run.stderr


# Numbers.
@pytest.mark.parametrize("fps", [math.nan, math.inf, -math.inf, 0.001, 0, -5, 101, True, "fast", None])
def test_gif_fps_out_of_bounds_is_refused_before_work(fps, tmp_path):
    if fps is None:  # None is the default rate: valid
        eqsdk.save_clip(FRAMES, tmp_path / "a.gif", fps=fps)
        assert eqsdk.read_clip(tmp_path / "a.gif")[1] == 10
        return
    with pytest.raises(InputError, match=r"fps: got .*; expected a number from 0.1 to 100 for a gif output"):
        eqsdk.save_clip(never_read(), tmp_path / "a.gif", fps=fps)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("fps, read_back", [(100, 100), (0.1, 0.1), (20, 20), (30, 1000 / 30)])
def test_gif_fps_in_10_ms_steps(fps, read_back, tmp_path):
    eqsdk.save_clip(FRAMES, tmp_path / "a.gif", fps=fps)
    assert eqsdk.read_clip(tmp_path / "a.gif")[1] == pytest.approx(read_back)


@pytest.mark.parametrize("scale", [0, -1, 33, 2.5, True, math.nan, 100000])
def test_scale_out_of_bounds_is_refused_at_once(scale, tmp_path):
    with pytest.raises(InputError, match=r"scale: got .*; expected an integer from 1 to 32"):
        eqsdk.save_image(FRAMES[0], tmp_path / "a.png", scale=scale)
    with pytest.raises(InputError, match=r"scale: got .*; expected an integer from 1 to 32"):
        eqsdk.save_clip(never_read(), tmp_path / "a.gif", scale=scale)
    assert listing(tmp_path) == []


def test_scaled_pixels_are_bounded(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"1000x1000 pixels become 5000x5000 = 25,000,000; expected at most"):
        eqsdk.save_image(np.zeros((1000, 1000, 3), np.uint8), tmp_path / "a.png", scale=5)
    with pytest.raises(InputError, match=r"become 8192x8192"):
        eqsdk.save_clip([np.zeros((256, 256, 3), np.uint8)], tmp_path / "a.gif", scale=32)
    assert time.perf_counter() - t0 < 1 and listing(tmp_path) == []
    eqsdk.save_image(FRAMES[0], tmp_path / "a.png", scale=np.int64(32))  # 256x256
    assert Image.open(tmp_path / "a.png").size == (256, 256)


@pytest.mark.parametrize("extra, says", [
    (["--fps", "nan"], "fps: got nan"),
    (["--fps", "0.001"], "fps: got 0.001"),
    (["--fps", "1000", "-o", "x.gif"], "expected a number from 0.1 to 100 for a gif output"),
    (["--scale", "100000"], "'--scale': 100000 is not in the range 1<=x<=32"),
])
def test_cli_numbers_are_checked_first_with_exit_2(extra, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["animate", "--char", str(CHAR), "--drive", str(tmp_path / "missing.gif"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert listing(tmp_path) == []


def test_cli_fits_a_clip_rate_the_output_cannot_hold(tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg")
    eqsdk.save_clip([np.asarray(Image.open(CHAR).convert("RGB"))] * 3, tmp_path / "fast.mp4", fps=200)
    args = ["animate", "--char", str(CHAR), "--drive", str(tmp_path / "fast.mp4"), "-o", str(tmp_path / "out.gif")]
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("eqsdk: note: the driving clip's 200 fps is outside 0.1..100 for a gif output; "
                      "writing 100 fps")
    assert eqsdk.read_clip(tmp_path / "out.gif")[1] == 100


# Signals.
@pytest.fixture(scope="module")
def long_drive(tmp_path_factory) -> Path:
    """A folder of 1,000 frames: animate runs for seconds, long enough to be stopped."""
    folder = tmp_path_factory.mktemp("long")
    base = Image.open(CHAR).convert("RGB")
    for k in range(1000):
        base.rotate(k % 40 - 20).save(folder / f"f{k}.png", compress_level=1)
    return folder


@pytest.mark.parametrize("sig, output, code", [(signal.SIGTERM, "out.gif", 143),
                                               (signal.SIGINT, "out.mp4", 130),
                                               (signal.SIGTERM, "frames", 143)])
def test_a_killed_animate_leaves_no_temporary_file(sig, output, code, long_drive, tmp_path):
    if output.endswith(".mp4"):
        pytest.importorskip("imageio_ffmpeg")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "eqsdk", "animate", "--char", str(CHAR), "--drive",
                             str(long_drive), "-o", str(work / output)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:  # until frames are being written
        temps = [p for p in work.iterdir() if p.name.startswith(f".{output}.")]
        if temps and (any(temps[0].iterdir()) if temps[0].is_dir() else temps[0].stat().st_size > 0):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "animate ended before it could be interrupted: make the clip longer"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip() == ("eqsdk: terminated" if sig == signal.SIGTERM else "eqsdk: interrupted")
    assert listing(work) == []
