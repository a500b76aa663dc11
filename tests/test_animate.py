"""Animation: Renderer.animate against Renderer.render, clips in and out, `eqsdk animate`."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eqsdk
from eqsdk.cli import main
from eqsdk.errors import BackendError, InputError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHAR, BG = EXAMPLES / "case1" / "char.png", EXAMPLES / "case1" / "bg.png"
DRIVE = EXAMPLES / "drive" / "drive.gif"


@pytest.fixture(scope="module")
def bundled():
    return eqsdk.load()


@pytest.fixture(scope="module")
def tiny(tiny_bundle):
    return eqsdk.load(tiny_bundle[0])


@pytest.fixture(scope="module")
def drive():
    frames, fps = eqsdk.read_clip(DRIVE)
    return frames


def few_colours(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    """n distinct frames of at most 200 colours: GIF (256 per frame) keeps them exactly."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (200, 3), dtype=np.uint8)
    return [palette[rng.integers(0, 200, (h, w))] for _ in range(n)]


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("model", ["tiny", "bundled"])
def test_frame_k_is_the_render_of_the_motion_from_frame_0_to_k(model, drive, request):
    r = request.getfixturevalue(model)
    frames = r.animate(CHAR, BG, drive, batch=5)  # 12 frames: three batches, the last partial
    assert len(frames) == len(drive) == 12
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    # Frame 0 is the unmoved character: the render of the motion from drive[0] to itself.
    assert max_diff(frames[0], r.render(CHAR, BG, (drive[0], drive[0]))) <= 1
    for k in range(1, len(drive)):
        assert max_diff(frames[k], r.render(CHAR, BG, (drive[0], drive[k]))) <= 1, f"frame {k}"


def test_the_bundled_model_moves_the_character(bundled, drive):
    """Every driving frame after the first moved the digit, so every output frame differs from
    the unmoved one (the tiny random model's outputs are too flat to tell)."""
    frames = bundled.animate(CHAR, BG, drive)
    assert min(np.abs(f.astype(int) - frames[0]).mean() for f in frames[1:]) > 5


def test_gif_round_trip_keeps_frames_fps_and_scale(tmp_path):
    frames = few_colours(4)
    eqsdk.save_clip(frames, tmp_path / "a.gif", fps=20)
    back, fps = eqsdk.read_clip(tmp_path / "a.gif")
    assert fps == 20 and len(back) == 4
    assert all(np.array_equal(a, b) for a, b in zip(back, frames))
    assert Image.open(tmp_path / "a.gif").info["loop"] == 0  # loops forever
    eqsdk.save_clip(frames, tmp_path / "b.gif", fps=20, scale=3)
    big, _ = eqsdk.read_clip(tmp_path / "b.gif")
    assert np.array_equal(big[1], frames[1].repeat(3, axis=0).repeat(3, axis=1))


def test_animated_png_is_read_with_its_fps(tmp_path):
    ims = [Image.fromarray(f) for f in few_colours(3)]
    ims[0].save(tmp_path / "a.png", save_all=True, append_images=ims[1:], duration=40)
    frames, fps = eqsdk.read_clip(tmp_path / "a.png")
    assert len(frames) == 3 and fps == 25
    assert np.array_equal(frames[2], np.asarray(ims[2]))


def test_folder_in_natural_order_and_out(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k in (10, 2, 1):  # sorted as text: frame1, frame10, frame2
        Image.fromarray(np.full((8, 8, 3), k, np.uint8)).save(src / f"frame{k}.png")
    (src / "notes.txt").write_text("not a frame")
    frames, fps = eqsdk.read_clip(src)
    assert [int(f[0, 0, 0]) for f in frames] == [1, 2, 10] and fps is None

    out = tmp_path / "out"
    eqsdk.save_clip(frames, out)
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert [int(f[0, 0, 0]) for f in eqsdk.read_clip(out)[0]] == [1, 2, 10]
    with pytest.raises(InputError, match="is not empty; pass --force"):
        eqsdk.save_clip(frames, out)
    (out / "keep.txt").write_text("mine")
    eqsdk.save_clip(frames[:1], out, overwrite=True)  # a shorter clip leaves no stale frame
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.png", "keep.txt"]


def test_side_by_side_puts_the_resized_driving_frame_left():
    drive = [np.full((32, 48, 3), 200, np.uint8)] * 2
    out = [np.zeros((64, 64, 3), np.uint8)] * 2
    pairs = list(eqsdk.side_by_side(drive, out))
    assert len(pairs) == 2 and pairs[0].shape == (64, 128, 3)
    assert (pairs[0][:, :64] == 200).all() and (pairs[0][:, 64:] == 0).all()


@pytest.mark.parametrize("bad, message", [
    ("missing.gif", "no such file or folder"),
    ("empty", "folder has no image files"),
    ("text.gif", "not an image"),
])
def test_bad_clips_raise_input_error(bad, message, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.gif").write_text("not a gif")
    with pytest.raises(InputError, match=message):
        eqsdk.read_clip(tmp_path / bad)


def test_bad_outputs_raise_before_writing(tmp_path):
    (tmp_path / "a.gif").write_bytes(b"keep me")
    frames = few_colours(2)
    with pytest.raises(InputError, match="exists; pass --force"):
        eqsdk.save_clip(frames, tmp_path / "a.gif")
    with pytest.raises(InputError, match="unknown clip extension '.xyz'"):
        eqsdk.save_clip(frames, tmp_path / "a.xyz")
    with pytest.raises(InputError, match="got none"):
        eqsdk.save_clip([], tmp_path / "b.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]  # no temporary file left
    assert (tmp_path / "a.gif").read_bytes() == b"keep me"


def test_video_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "imageio", None)  # import imageio fails
    with pytest.raises(BackendError, match=r"pip install 'eqsdk\[video\]'"):
        eqsdk.save_clip(few_colours(2), tmp_path / "a.mp4")
    assert not (tmp_path / "a.mp4").exists()


def test_mp4_round_trip(tmp_path):
    pytest.importorskip("imageio")
    pytest.importorskip("imageio_ffmpeg")
    frames = [np.full((64, 64, 3), 40 * k, np.uint8) for k in range(5)]  # flat: little H.264 loss
    eqsdk.save_clip(frames, tmp_path / "a.mp4", fps=12.5, scale=2)
    back, fps = eqsdk.read_clip(tmp_path / "a.mp4")
    assert len(back) == 5 and fps == pytest.approx(12.5) and back[0].shape == (128, 128, 3)
    assert all(max_diff(a[::2, ::2], b) <= 4 for a, b in zip(back, frames))


# The command line.
def animate_args(out: Path, *extra: str, drive: Path = DRIVE) -> list[str]:
    return ["animate", "--char", str(CHAR), "--bg", str(BG), "--drive", str(drive), "-o", str(out), *extra]


def test_cli_writes_the_clip(tmp_path, capsys, bundled, drive):
    out = tmp_path / "out.gif"
    assert main(animate_args(out)) == 0
    frames, fps = eqsdk.read_clip(out)
    assert len(frames) == 12 and fps == 5  # the driving clip's own rate
    # GIF keeps at most 256 colours per frame: close to the renderer's frames, not exact.
    expected = bundled.animate(CHAR, BG, drive)
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(frames, expected)]) < 2
    err = capsys.readouterr().err
    assert err.startswith("wrote") and "12 frames, 64x64, 5 fps" in err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_defaults_to_the_characters_own_background_and_a_named_output(tmp_path, monkeypatch, bundled, drive):
    monkeypatch.chdir(tmp_path)
    assert main(["animate", "--char", str(CHAR), "--drive", str(DRIVE)]) == 0
    frames, _ = eqsdk.read_clip(tmp_path / f"{CHAR.stem}-{DRIVE.stem}.gif")
    expected = bundled.animate(CHAR, CHAR, drive)
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(frames, expected)]) < 2
    assert main(["animate", "--char", str(CHAR), "--drive", str(DRIVE)]) == 2  # never overwritten


def test_cli_side_by_side_scale_fps_and_folder_input(tmp_path, capsys, tiny_bundle, drive):
    src = tmp_path / "src"
    eqsdk.save_clip(drive[:4], src)
    out = tmp_path / "out.gif"
    args = animate_args(out, "--side-by-side", "--scale", "2", "--fps", "25",
                        "--model", str(tiny_bundle[0]), drive=src)
    assert main(args) == 0
    frames, fps = eqsdk.read_clip(out)
    assert len(frames) == 4 and fps == 25 and frames[0].shape == (128, 256, 3)
    assert "4 frames, 256x128, 25 fps" in capsys.readouterr().err


def test_cli_resizes_a_large_clip_with_one_note(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(3):
        Image.open(CHAR).resize((96, 80)).rotate(10 * k).save(src / f"f{k}.png")
    assert main(animate_args(tmp_path / "out", drive=src)) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "resized 3 frames from 96x80 to 64x64" in err[0]
    assert len(list((tmp_path / "out").iterdir())) == 3


def test_cli_mp4_in_and_out(tmp_path, capsys):
    pytest.importorskip("imageio")
    pytest.importorskip("imageio_ffmpeg")
    assert main(animate_args(tmp_path / "out.mp4")) == 0
    assert main(animate_args(tmp_path / "again.gif", drive=tmp_path / "out.mp4")) == 0
    frames, fps = eqsdk.read_clip(tmp_path / "again.gif")
    assert len(frames) == 12 and fps == 5


def bad_cli_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "empty").mkdir()
    (tmp / "exists.gif").write_bytes(b"keep me")
    out = tmp / "out.gif"
    return {
        "missing clip": (animate_args(out, drive=tmp / "nope.gif"), "no such file or folder"),
        "empty folder": (animate_args(out, drive=tmp / "empty"), "folder has no image files"),
        "existing output": (animate_args(tmp / "exists.gif"), "exists; pass --force"),
        "bad extension": (animate_args(tmp / "out.xyz"), "unknown clip extension"),
        "missing char": (animate_args(out)[:1] + animate_args(out)[3:], "Missing option '--char'"),
    }


@pytest.mark.parametrize("case", ["missing clip", "empty folder", "existing output", "bad extension",
                                  "missing char"])
def test_cli_bad_input_is_one_line_exit_2_and_no_output(case, tmp_path, capsys):
    args, message = bad_cli_inputs(tmp_path)[case]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "exists.gif"]
    assert (tmp_path / "exists.gif").read_bytes() == b"keep me"


def test_help_has_an_example(capsys):
    assert main(["animate", "--help"]) == 0
    assert "eqsdk animate --char" in capsys.readouterr().out
