"""Saved motions: the .eqm file (eqsdk.motion_file), its replay against the live animation,
refusals (another bundle, corrupt and hostile files), and `eqsdk encode-motion` /
`eqsdk animate --motion`."""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import eqsdk
from eqsdk import motion_file
from eqsdk.cli import main
from eqsdk.errors import InputError
from eqsdk.images import to_array
from eqsdk.motion_file import Motion, MotionFileError, MotionModelError, load_motion, save_motion
from eqsdk.renderer import Encoding

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHAR, BG = EXAMPLES / "case1" / "char.png", EXAMPLES / "case1" / "bg.png"
DRIVE = EXAMPLES / "drive" / "drive.gif"
KNIGHT, WALK = EXAMPLES / "sprites" / "knight.png", EXAMPLES / "sprites" / "walk_sequence.gif"


@pytest.fixture(scope="module")
def tiny(tiny_bundle):
    return eqsdk.load(tiny_bundle[0])


@pytest.fixture(scope="module")
def drive():
    return eqsdk.read_clip(DRIVE)[0]


@pytest.fixture(scope="module")
def saved(mnist, drive, tmp_path_factory):
    """The mnist model's motion of the example clip, as a file."""
    path = tmp_path_factory.mktemp("motion") / "walk.eqm"
    save_motion(mnist.encode_motion_clip(drive), path)
    return path


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# The file.
def test_round_trip_keeps_every_value_exactly(mnist, drive, saved):
    motion = mnist.encode_motion_clip(drive)
    back = load_motion(saved)
    assert len(back) == len(drive) == 12 and back.theta.shape == (12, 2, 3) and back.origin.shape == (12, 2)
    assert back.theta.dtype == back.origin.dtype == np.float32
    assert np.array_equal(back.theta, motion.theta) and np.array_equal(back.origin, motion.origin)
    assert back.fps == 5 and back.checked is False and back.model == "mnist"
    assert dict(back.sha256) == {g: mnist.manifest.graphs[g].sha256 for g in ("f_c", "t_z")}
    assert back.source == str(saved)
    # Frame 0 is the motion from the first frame to itself: close to the identity.
    assert max_diff(back.theta[0], [[1, 0, 0], [0, 1, 0]]) < 0.01
    assert max_diff(back.theta[1:], back.theta[:1]) > 0.05  # the digit does move
    data = json.loads(saved.read_text())
    assert (data["format"], data["version"], data["frames"]) == ("eqsdk-motion", 1, 12)


def test_a_motion_is_read_only(saved):
    motion = load_motion(saved)
    with pytest.raises(ValueError):
        motion.theta[0, 0, 0] = 2
    with pytest.raises(AttributeError):
        motion.fps = 30


def test_frames_from_a_generator_and_fps_given(tiny, drive):
    motion = tiny.encode_motion_clip((f for f in drive[:5]), batch=2, fps=12.5)
    assert len(motion) == 5 and motion.fps == 12.5 and motion.model == "tiny"
    assert tiny.encode_motion_clip(drive[:1], fps=2000).fps == 2000  # a GIF of 0.5 ms frames
    assert np.array_equal(motion.theta, tiny.encode_motion_clip(drive[:5]).theta)


def test_a_clip_over_the_cap_is_refused(tiny, drive, monkeypatch):
    monkeypatch.setattr(motion_file, "MAX_FRAMES", 4)
    with pytest.raises(InputError, match="12 frames; expected at most 4"):
        tiny.encode_motion_clip(drive)
    with pytest.raises(InputError, match="more than 4 frames"):
        tiny.encode_motion_clip(iter(drive), batch=3)


# The replay.
@pytest.mark.parametrize("model, char, bg, clip", [("mnist", CHAR, BG, DRIVE), ("sprites", KNIGHT, KNIGHT, WALK)])
def test_replay_equals_the_live_animation(model, char, bg, clip, request, tmp_path):
    r = request.getfixturevalue(model)
    frames, _ = eqsdk.read_clip(clip)
    save_motion(r.encode_motion_clip(frames, batch=5), tmp_path / "m.eqm")
    motion = load_motion(tmp_path / "m.eqm")
    live = r.animate(char, bg, frames, batch=5)
    replay = r.animate(char, bg, motion, batch=5)  # batches: 5, 5, then the rest
    assert len(replay) == len(live) == len(frames)
    assert max_diff(np.stack(replay), np.stack(live)) == 0
    # Before uint8: the images g decodes, frame by frame.
    b, n = r.backend, len(frames)
    x = np.stack([to_array(f, r.image_size) for f in frames])
    character, background = r.encode_character(char), r.encode_background(bg)
    reference = Encoding("character", b.run("f_c", x=x[:1])["z"], 1, True)
    floats = r.compose_arrays(character, r.motion_encoding(motion), background, n)
    assert max_diff(floats, r.drive(character, background, reference, x)) <= 1e-5
    # compose takes the motion's encoding too: N motions on one character and background.
    assert max_diff(r.compose(character, r.motion_encoding(motion), background), np.stack(live)) == 0


def test_replay_of_a_checked_motion_equals_the_checked_animation(tiny_bundle, drive):
    r = eqsdk.load(tiny_bundle[0], check_motion=True)
    motion = r.encode_motion_clip(drive[:6])
    assert motion.checked
    live = r.animate(CHAR, BG, drive[:6])
    assert max_diff(np.stack(r.animate(CHAR, BG, motion)), np.stack(live)) == 0


def test_replay_reports_progress(tiny, drive):
    motion = tiny.encode_motion_clip(drive)
    seen = []
    frames = list(tiny.animate_iter(CHAR, BG, motion, batch=5, progress=lambda d, t: seen.append((d, t))))
    assert len(frames) == 12 and seen == [(5, 12), (10, 12), (12, 12)]


@pytest.mark.slow
def test_replay_is_faster_than_the_live_animation(mnist, drive):
    """Measured, printed, and only loosely asserted: the replay skips f_c on every driving
    frame and T^Z, and runs the warp and g (g, the largest graph, runs in both)."""
    frames = list(drive) * 4  # 48 frames, decoded already: the graphs alone are compared
    motion = mnist.encode_motion_clip(frames)
    mnist.warmup()
    live, replay = [], []
    for _ in range(5):  # interleaved, so that a busy machine slows both alike
        for times, source in ((live, frames), (replay, motion)):
            t0 = time.perf_counter()
            mnist.animate(CHAR, BG, source)
            times.append(time.perf_counter() - t0)
    live_s, replay_s = float(np.median(live)), float(np.median(replay))
    print(f"\n48 frames, mnist, CPU, median of 5: live animate {1000 * live_s:.0f} ms, replay of the "
          f"saved motion {1000 * replay_s:.0f} ms: {live_s / replay_s:.2f}x")
    assert replay_s < live_s


# Refusals.
def test_a_motion_of_another_bundle_is_refused(saved, sprites, tiny):
    motion = load_motion(saved)
    for r in (sprites, tiny):
        with pytest.raises(MotionModelError, match=r"encoded by the model 'mnist' .*not by this renderer's") as e:
            r.animate(CHAR, BG, motion)
        assert e.value.model == "mnist" and str(saved) in str(e.value)
        with pytest.raises(MotionModelError):
            r.motion_encoding(motion)
    assert isinstance(e.value, eqsdk.InputError) and isinstance(e.value, eqsdk.EqsdkError)


def test_same_name_other_graphs_is_refused(saved, mnist):
    """The identity is the graphs' sha256, not the name: a retrained "mnist" is another model."""
    motion = load_motion(saved)
    other = Motion(motion.theta, motion.origin, "mnist", {"f_c": "0" * 64, "t_z": motion.sha256["t_z"]})
    with pytest.raises(MotionModelError, match="f_c 000000000000"):
        mnist.animate(CHAR, BG, other)


def valid(saved: Path) -> dict:
    return json.loads(saved.read_text())


def edited(saved: Path, **changes) -> str:
    data = valid(saved)
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


def with_number(saved: Path, text: str) -> str:
    """The file with theta[3][0][0] written as `text`."""
    data = valid(saved)
    data["theta"][3][0][0] = 123.25
    return json.dumps(data).replace("123.25", text)


def bad_files(saved: Path) -> dict[str, tuple[bytes | str, str]]:
    good = saved.read_bytes()
    theta = valid(saved)["theta"]
    return {
        "truncated": (good[:len(good) // 2], "cannot be parsed as UTF-8 JSON"),
        "empty": (b"", "cannot be parsed as UTF-8 JSON"),
        "a png": ((EXAMPLES / "case1" / "char.png").read_bytes(), "cannot be parsed as UTF-8 JSON"),
        "not utf-8": (b'{"format": "\xff"}', "cannot be parsed as UTF-8 JSON"),
        "a list": ("[1, 2]", "a list; expected a JSON object"),
        "other format": (edited(saved, format="eqsdk-scene"), "format \"eqsdk-scene\"; expected 'eqsdk-motion'"),
        "newer version": (edited(saved, version=2), "version 2, of a newer eqsdk"),
        "version as text": (edited(saved, version="1"), "version \"1\"; expected 1"),
        "missing key": (edited(saved, origin=KeyError), "missing key 'origin'"),
        "unknown key": (edited(saved, extra=1), "unknown key 'extra'"),
        "fewer thetas": (edited(saved, theta=theta[:-1]), "key 'theta': a list of 11; expected a list of 12"),
        "3x3 theta": (edited(saved, theta=[t + [[0, 0, 1]] for t in theta]), "key 'theta[0]': a list of 3"),
        "text in theta": (edited(saved, theta=[[["1", 0, 0], [0, 1, 0]]] * 12), "key 'theta[0][0][0]': \"1\""),
        "bool in theta": (edited(saved, theta=[[[True, 0, 0], [0, 1, 0]]] * 12), "true; expected a finite number"),
        "NaN": (with_number(saved, "NaN"), "NaN is not a finite number"),
        "1e400": (with_number(saved, "1e400"), "key 'theta[3][0][0]': Infinity; expected a finite number"),
        "10**400": (with_number(saved, "1" + "0" * 400), "key 'theta[3][0][0]': 1000"),
        "beyond float32": (edited(saved, origin=[[1e39, 0]] * 12), "origin has nan or inf"),
        "a billion frames": (edited(saved, frames=10 ** 9), "expected an integer from 1 to 30,000"),
        "no frames": (edited(saved, frames=0, theta=[], origin=[]), "expected an integer from 1"),
        "short sha256": (edited(saved, model={"name": "mnist", "sha256": {"f_c": "ab", "t_z": "cd"}}),
                         "expected 64 lowercase hex digits"),
        "no model": (edited(saved, model="mnist"), "key 'model'"),
        "negative fps": (edited(saved, fps=-5), "key 'fps': -5; expected null or a positive number"),
        "checked as text": (edited(saved, checked="no"), "key 'checked'"),
        "deeply nested": ("[" * 200_000 + "]" * 200_000, "cannot be parsed as UTF-8 JSON"),
    }


@pytest.mark.parametrize("case", ["truncated", "empty", "a png", "not utf-8", "a list", "other format",
                                  "newer version", "version as text", "missing key", "unknown key",
                                  "fewer thetas", "3x3 theta", "text in theta", "bool in theta", "NaN",
                                  "1e400", "10**400", "beyond float32", "a billion frames", "no frames",
                                  "short sha256", "no model", "negative fps", "checked as text",
                                  "deeply nested"])
def test_corrupt_and_hostile_files_are_refused(case, saved, tmp_path):
    content, message = bad_files(saved)[case]
    path = tmp_path / "bad.eqm"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(MotionFileError, match="^motion '.*bad.eqm': ") as e:
        load_motion(path)
    assert message in str(e.value)
    assert isinstance(e.value, eqsdk.InputError)


def test_a_huge_file_is_refused_unparsed(tmp_path):
    path = tmp_path / "huge.eqm"
    with open(path, "wb") as f:
        f.truncate(motion_file.MAX_BYTES + 1)  # sparse: nothing written
    with pytest.raises(MotionFileError, match="more than 8,388,608 bytes"):
        load_motion(path)


@pytest.mark.parametrize("kind, message", [("missing", "no such file"), ("folder", "not a regular file"),
                                           ("fifo", "not a regular file")])
def test_what_is_not_a_file_is_refused(kind, message, tmp_path):
    path = tmp_path / "m.eqm"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    with pytest.raises(MotionFileError, match=message):
        load_motion(path)


def test_a_motion_is_checked_when_made(saved):
    m = load_motion(saved)
    with pytest.raises(MotionFileError, match=r"theta of shape \(12, 3, 3\)"):
        Motion(np.zeros((12, 3, 3)), m.origin, "mnist", m.sha256)
    with pytest.raises(MotionFileError, match=r"origin of shape \(11, 2\); expected \(12, 2\)"):
        Motion(m.theta, m.origin[1:], "mnist", m.sha256)
    with pytest.raises(MotionFileError, match="theta has nan or inf"):
        Motion(np.full((1, 2, 3), np.nan), m.origin[:1], "mnist", m.sha256)
    with pytest.raises(MotionFileError, match="fps nan"):
        Motion(m.theta, m.origin, "mnist", m.sha256, fps=float("nan"))


def test_save_refuses_before_writing(saved, tmp_path):
    motion = load_motion(saved)
    (tmp_path / "keep.eqm").write_text("mine")
    with pytest.raises(InputError, match="exists; pass --force"):
        save_motion(motion, tmp_path / "keep.eqm")
    with pytest.raises(InputError, match=r"extension '.json'; expected a motion file name ending in .eqm"):
        save_motion(motion, tmp_path / "m.json")
    with pytest.raises(InputError, match="directory .* does not exist"):
        save_motion(motion, tmp_path / "nope" / "m.eqm")
    with pytest.raises(InputError, match="expected a Motion"):
        save_motion({"theta": []}, tmp_path / "m.eqm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.eqm"]
    assert (tmp_path / "keep.eqm").read_text() == "mine"
    save_motion(motion, tmp_path / "keep.eqm", overwrite=True)
    assert np.array_equal(load_motion(tmp_path / "keep.eqm").theta, motion.theta)


# The command line.
def test_cli_encode_motion_then_animate_with_it(tmp_path, capsys, mnist, drive):
    eqm, out = tmp_path / "walk.eqm", tmp_path / "out"
    assert main(["encode-motion", str(DRIVE), "-o", str(eqm)]) == 0
    err = capsys.readouterr().err
    assert err.strip() == f"wrote {eqm} (12 frames, model mnist, backend cpu)"
    assert np.array_equal(load_motion(eqm).theta, mnist.encode_motion_clip(drive).theta)
    assert main(["animate", "--char", str(CHAR), "--bg", str(BG), "--motion", str(eqm), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "12 frames, 64x64, 5 fps" in err and len(err.strip().splitlines()) == 1  # the clip's fps
    frames, _ = eqsdk.read_clip(out)  # a folder of PNG frames: lossless
    assert max_diff(np.stack(list(frames)), np.stack(mnist.animate(CHAR, BG, drive))) == 0


def test_cli_defaults_name_the_files_after_their_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["encode-motion", str(DRIVE)]) == 0
    assert main(["animate", "--char", str(CHAR), "--motion", "drive.eqm"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["char-drive.gif", "drive.eqm"]
    assert main(["encode-motion", str(DRIVE)]) == 2  # never overwritten without --force
    assert main(["encode-motion", str(DRIVE), "--force"]) == 0


def bad_cli_calls(tmp: Path, saved: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "exists.eqm").write_text("keep me")
    (tmp / "corrupt.eqm").write_bytes(saved.read_bytes()[:100])
    out = str(tmp / "out.gif")
    anim = ["animate", "--char", str(CHAR), "-o", out]
    return {
        "drive and motion": (anim + ["--drive", str(DRIVE), "--motion", str(saved)],
                             "expected --drive CLIP or --motion FILE (one of them)"),
        "neither": (anim, "expected --drive CLIP or --motion FILE"),
        "side by side": (anim + ["--motion", str(saved), "--side-by-side"], "a --motion file does not hold"),
        "check motion": (anim + ["--motion", str(saved), "--check-motion"], "give it to encode-motion"),
        "other bundle": (anim + ["--motion", str(saved), "--model", "sprites"],
                         "encoded by the model 'mnist'"),
        "corrupt motion": (anim + ["--motion", str(tmp / "corrupt.eqm")], "cannot be parsed as UTF-8 JSON"),
        "missing motion": (anim + ["--motion", str(tmp / "nope.eqm")], "no such file"),
        "existing output": (["encode-motion", str(DRIVE), "-o", str(tmp / "exists.eqm")], "exists; pass --force"),
        "not .eqm": (["encode-motion", str(DRIVE), "-o", str(tmp / "m.gif")], "ending in .eqm"),
        "missing clip": (["encode-motion", str(tmp / "nope.gif"), "-o", str(tmp / "m.eqm")],
                         "no such file or folder"),
        "no clip": (["encode-motion"], "Missing argument 'CLIP'"),
    }


@pytest.mark.parametrize("case", ["drive and motion", "neither", "side by side", "check motion", "other bundle",
                                  "corrupt motion", "missing motion", "existing output", "not .eqm",
                                  "missing clip", "no clip"])
def test_cli_misuse_is_one_line_exit_2_and_nothing_written(case, saved, tmp_path, capsys):
    args, message = bad_cli_calls(tmp_path, saved)[case]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.eqm", "exists.eqm"]
    assert (tmp_path / "exists.eqm").read_text() == "keep me"


def test_help_shows_both_commands(capsys):
    assert main(["encode-motion", "--help"]) == 0
    assert "eqsdk encode-motion examples/drive/drive.gif -o walk.eqm" in capsys.readouterr().out
    assert main(["animate", "--help"]) == 0
    assert "--motion walk.eqm" in capsys.readouterr().out
