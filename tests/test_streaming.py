"""Flat memory for any length: clips are read lazily, rendered in batches and written frame by
frame; compose and encode_* run in batches of BATCH. Frames are tracked with weak references:
a pipeline that kept every frame would have them all alive at the end."""
import weakref
from pathlib import Path

import numpy as np
import pytest

import eqsdk
from eqsdk.errors import InputError
from eqsdk.renderer import BATCH, Encoding

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHAR, BG = EXAMPLES / "case1" / "char.png", EXAMPLES / "case1" / "bg.png"
DRIVE = EXAMPLES / "drive" / "drive.gif"


@pytest.fixture(scope="module")
def tiny(tiny_bundle):
    return eqsdk.load(tiny_bundle[0])


def distinct(n: int, size: int = 16) -> list[np.ndarray]:
    """n frames of at most 200 colours (GIF keeps them exactly), each different."""
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (200, 3), dtype=np.uint8)
    return [palette[rng.integers(0, 200, (size, size))] for _ in range(n)]


class Tracked:
    """Frames made on demand; `alive` counts those still referenced anywhere."""

    def __init__(self, frames: list[np.ndarray]):
        self.frames, self.refs = frames, []

    def __iter__(self):
        for f in self.frames:
            f = f.copy()
            self.refs.append(weakref.ref(f))
            yield f

    @property
    def alive(self) -> int:
        return sum(r() is not None for r in self.refs)


def test_a_clip_reads_frames_when_used(tmp_path):
    frames = distinct(20)
    eqsdk.save_clip(frames, tmp_path / "a.gif", fps=25)
    clip, fps = eqsdk.read_clip(tmp_path / "a.gif")
    assert isinstance(clip, eqsdk.video.Clip) and not isinstance(clip, list)
    assert (len(clip), clip.size, fps, clip.fps) == (20, (16, 16), 25, 25)
    assert np.array_equal(clip[5], frames[5]) and np.array_equal(clip[-1], frames[-1])
    assert all(np.array_equal(a, b) for a, b in zip(clip[2:9:3], frames[2:9:3]))
    assert all(np.array_equal(a, b) for a, b in zip(clip, frames))
    assert sum(1 for _ in clip) == 20  # iterable again
    with pytest.raises(IndexError):
        clip[20]


def test_save_clip_writes_each_frame_as_it_comes(tmp_path):
    seen = []

    def frames():
        for k, f in enumerate(distinct(12, size=128)):  # over 8 KB each: past the file buffer
            temps = list(tmp_path.glob(".a.gif.*"))
            seen.append(temps[0].stat().st_size if temps else None)
            yield f

    eqsdk.save_clip(frames(), tmp_path / "a.gif")
    assert seen[0] is None and seen[2] > 0 and seen[11] > seen[6] > seen[2]  # grows while frames come
    assert len(eqsdk.read_clip(tmp_path / "a.gif")[0]) == 12  # every frame kept, none merged


@pytest.mark.parametrize("output", ["a.gif", "frames", "a.mp4"])
def test_save_clip_holds_a_few_frames_at_a_time(output, tmp_path):
    if output.endswith(".mp4"):
        pytest.importorskip("imageio_ffmpeg")
    source = Tracked(distinct(40))
    most = []

    def frames():
        for f in source:
            most.append(source.alive)
            yield f

    eqsdk.save_clip(frames(), tmp_path / output)
    assert max(most) <= 3, most
    assert len(eqsdk.read_clip(tmp_path / output)[0]) == 40


def test_animate_iter_streams_in_batches(tiny):
    drive = [np.asarray(f) for f in eqsdk.read_clip(DRIVE)[0]] * 4  # 48 frames
    source = Tracked(drive)
    calls = []
    frames = tiny.animate_iter(CHAR, BG, iter(source), batch=5,
                               progress=lambda done, total: calls.append((done, total, source.alive)))
    assert not isinstance(frames, list)
    out = [f.copy() for f in frames]  # a consumer that keeps copies only
    assert len(out) == 48 and calls[-1][:2] == (48, None)  # a generator has no len(): total None
    assert max(alive for _, _, alive in calls) <= 5 + 1  # a batch, and the reference frame
    expected = tiny.animate(CHAR, BG, drive, batch=16)
    assert all(np.array_equal(a, b) for a, b in zip(out, expected))


def test_animate_iter_checks_its_arguments_at_the_call(tiny):
    with pytest.raises(InputError, match="drive: got no frames"):
        tiny.animate_iter(CHAR, BG, iter([]))
    with pytest.raises(InputError, match="batch: got 0"):
        tiny.animate_iter(CHAR, BG, [CHAR], batch=0)


def test_animate_of_a_clip_to_a_clip(tiny, tmp_path):
    clip, fps = eqsdk.read_clip(DRIVE)
    eqsdk.save_clip(eqsdk.side_by_side(clip, tiny.animate_iter(CHAR, BG, clip)), tmp_path / "o", fps)
    back, _ = eqsdk.read_clip(tmp_path / "o")
    assert len(back) == 12 and back[0].shape == (64, 128, 3)
    assert np.array_equal(back[3][:, 64:], tiny.animate(CHAR, BG, clip)[3])


def test_compose_in_batches_equals_one_at_a_time(tiny):
    rng = np.random.default_rng(0)
    n = 2 * BATCH + 7  # two full batches and a partial one
    images = [rng.random((64, 64, 3), dtype=np.float32) for _ in range(n)]
    characters, background = tiny.encode_character(images), tiny.encode_background(images[0])
    assert len(characters) == n
    z_one = tiny.encode_character(images[n - 1]).data
    assert np.abs(characters.data[n - 1:] - z_one).max() < 1e-5  # batched encoding, same features
    theta = np.tile(np.array([[[0.9, -0.2, 0.1], [0.2, 0.9, 0.0]]], np.float32), (n, 1, 1))
    theta[:, 0, 2] = np.linspace(-0.3, 0.3, n)  # a different shift each
    motions = Encoding("motion", (theta, np.zeros((n, 2), np.float32)), n, False)
    out = tiny.compose(characters, motions, background)
    assert out.shape == (n, 64, 64, 3) and out.dtype == np.uint8
    for k in (0, BATCH - 1, BATCH, n - 1):
        one = tiny.compose(Encoding("character", characters.data[k:k + 1], 1, True),
                           Encoding("motion", (theta[k:k + 1], np.zeros((1, 2), np.float32)), 1, True),
                           background)
        assert np.abs(out[k].astype(int) - one).max() <= 1, k


def test_frames_of_another_size_or_count_are_refused(tmp_path):
    frames = distinct(3) + [np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(InputError, match=r"frames\[3\]: 8x8 pixels; expected 16x16 like frames\[0\]"):
        eqsdk.save_clip(frames, tmp_path / "a.gif")
    with pytest.raises(InputError, match="fewer driving than output frames"):
        list(eqsdk.side_by_side(iter(distinct(2)), iter(distinct(3))))
    with pytest.raises(InputError, match="more driving than output frames"):
        list(eqsdk.side_by_side(iter(distinct(3)), iter(distinct(2))))
    pytest.importorskip("imageio_ffmpeg")
    with pytest.raises(InputError, match="15x15 pixels; expected an even width and height"):
        eqsdk.save_clip([np.zeros((15, 15, 3), np.uint8)], tmp_path / "a.mp4")
    assert list(tmp_path.iterdir()) == []
