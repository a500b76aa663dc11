"""train.videos: footage folders validated, cropped, cached and sampled as training pairs; real
small videos written with PyAV (H.264 MP4, VP8 WebM), GIFs with Pillow, frame folders as PNG."""
import time

import numpy as np
import pytest
import torch
from PIL import Image

from train.datasets import pair_source
from train.videos import (DEFAULT_MAX_GAP, MOVING_CAMERA, VideoData, VideoDataError, VideoPairs,
                          load_videos, main)

av = pytest.importorskip("av")


def write_video(path, frames, codec="libx264", fps=10):
    """(N, H, W, 3) uint8 frames to a video file, nearly lossless."""
    options = {"libx264": {"crf": "12", "preset": "ultrafast"}, "libvpx": {"crf": "4", "b": "4M"}}[codec]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_frames(folder, frames):
    folder.mkdir()
    for k, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame{k}.png")  # frame2 before frame10: natural order
    return folder


def texture(h, w, seed=0):
    """(h, w, 3) uint8 smooth random texture: a still scene's background."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w + 8, h + 8), Image.BICUBIC))[:h, :w]


def sprite_clip(n=12, h=96, w=128, seed=0):
    """A still background with a white square walking across the middle."""
    bg = texture(h, w, seed)
    frames = np.repeat(bg[None], n, 0)
    for k in range(n):
        x = 30 + 5 * k
        frames[k, 40:60, x:x + 16] = 255
    return frames


def pan_clip(n=12, h=96, w=128, seed=1):
    """The whole frame pans 3 pixels a frame over a textured scene."""
    scene = texture(h, w + 3 * n, seed)
    return np.stack([scene[:, 3 * k:3 * k + w] for k in range(n)])


def counting_clip(n, size=16):
    """Frame k is flat grey 4 * k: its index can be read back from a sampled pair."""
    return np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 4, size * size * 3).reshape(n, size, size, 3)


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """Good clips of every kind, and bad entries of every kind."""
    d = tmp_path_factory.mktemp("footage")
    write_video(d / "walk.mp4", sprite_clip())
    if "libvpx" in av.codecs_available:
        write_video(d / "walk.webm", sprite_clip(seed=2), "libvpx")
    frames = sprite_clip(8, seed=3)
    Image.fromarray(frames[0]).save(d / "walk.gif", save_all=True,
                                    append_images=[Image.fromarray(f) for f in frames[1:]], duration=100)
    write_frames(d / "frames", sprite_clip(6, seed=4))
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    write_video(d / "one.mp4", sprite_clip(1))
    mixed = write_frames(d / "mixed", sprite_clip(3))
    Image.new("RGB", (50, 40)).save(mixed / "frame3.png")
    (d / "notes.txt").write_text("not a video")
    (d / ".DS_Store").write_bytes(b"\0")
    return d


@pytest.fixture(scope="module")
def built(footage, tmp_path_factory):
    return VideoData.build(footage, size=32, cache_dir=tmp_path_factory.mktemp("cache"))


def test_report_keeps_good_clips_and_says_why_others_are_rejected(footage, built):
    r = built.report
    good = {"walk.mp4", "walk.gif", "frames"} | ({"walk.webm"} if (footage / "walk.webm").exists() else set())
    assert {c.path.name for c in r.clips} == good
    reasons = {x.path.name: x.reason for x in r.rejected}
    assert set(reasons) == {"corrupt.mp4", "one.mp4", "mixed", "notes.txt"}  # .DS_Store skipped
    assert reasons["corrupt.mp4"] == "unreadable or corrupt (Invalid data found when processing input)"
    assert "1 frame" in reasons["one.mp4"] and "at least 2" in reasons["one.mp4"]
    assert "sizes differ" in reasons["mixed"] and "50x40" in reasons["mixed"]
    assert "not a video" in reasons["notes.txt"]
    by_name = {c.path.name: c for c in r.clips}
    assert by_name["walk.mp4"].frames == 12 and by_name["walk.mp4"].source_size == (128, 96)
    assert by_name["walk.gif"].frames == 8 and by_name["frames"].frames == 6
    assert r.moving_camera == () and max(c.background_change for c in r.clips) < 0.1  # GIF dithering too
    text = r.format()
    assert "rejected corrupt.mp4" in text and "split: by video" in text


def test_split_by_video_is_seeded_and_holds_one_out(footage, built, tmp_path):
    r = built.report
    assert len(r.val) == 1 and set(r.train) | set(r.val) == {c.path for c in r.clips}
    assert not set(r.train) & set(r.val)
    again = VideoData.build(footage, size=32, cache_dir=built.report.clips[0].cache_file.parent)
    assert again.report.val == r.val
    vals = {VideoData.build(footage, size=32, cache_dir=built.report.clips[0].cache_file.parent,
                            seed=s).report.val for s in range(6)}
    assert len(vals) > 1  # the seed chooses


def test_pairs_have_the_model_shape_and_range(built):
    x1, x2, tx = built.pairs("train").sample_pairs(10, np.random.default_rng(0), augment=True)
    assert x1.shape == x2.shape == (10, 3, 32, 32) and x1.dtype == x2.dtype == torch.float32
    assert 0 <= float(x1.min()) and float(x1.max()) <= 1 and tx is None
    assert (x1 != x2).any(dim=(1, 2, 3)).all()  # a sprite moved in every pair


def test_centre_crop_then_resize_puts_a_known_square_where_expected(tmp_path):
    # 120x80 frames: red side bands outside the centre 80x80 square, whose top-left quarter is blue
    f = np.zeros((80, 120, 3), np.uint8)
    f[:, :20] = f[:, 100:] = (255, 0, 0)
    f[:, 20:100] = (0, 255, 0)
    f[:40, 20:60] = (0, 0, 255)
    (tmp_path / "clips").mkdir()
    write_frames(tmp_path / "clips" / "square", [f, f])
    frames = VideoData.build(tmp_path / "clips", size=8, cache_dir=tmp_path / "cache").frames[0]
    assert frames.shape == (2, 3, 8, 8)  # channels first, as the model reads them
    frames = frames.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(frames[0, :3, :3], np.broadcast_to([0, 0, 255], (3, 3, 3)), atol=3)
    np.testing.assert_allclose(frames[0, 5:, 5:], np.broadcast_to([0, 255, 0], (3, 3, 3)), atol=3)
    assert frames[..., 0].max() <= 3  # no red: the side bands are cropped away
    # a given crop, in source pixels: the blue quarter alone, and the left red band alone
    blue = VideoData.build(tmp_path / "clips", size=16, crop=(20, 0, 40, 40), cache_dir=tmp_path / "cache")
    assert blue.frames[0].shape == (2, 3, 16, 16)
    np.testing.assert_allclose(blue.frames[0][0].transpose(1, 2, 0), np.broadcast_to([0, 0, 255], (16, 16, 3)), atol=1)
    red = VideoData.build(tmp_path / "clips", size=4, crop=(0, 10, 20, 30), cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(red.frames[0][0].transpose(1, 2, 0), np.broadcast_to([255, 0, 0], (4, 4, 3)), atol=1)


def test_a_crop_outside_the_frames_is_rejected(tmp_path):
    write_frames(tmp_path / "a", sprite_clip(3))  # 128x96
    with pytest.raises(VideoDataError, match=r"crop 100,0,40,40 reaches \(140, 40\), outside its 128x96"):
        VideoData.build(tmp_path, crop=(100, 0, 40, 40), cache_dir=tmp_path / "cache")
    with pytest.raises(VideoDataError, match="crop: got"):
        VideoData.build(tmp_path, crop=(0, 0, 0, 10), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("size", [64, 128])
def test_model_sizes(tmp_path, size):
    write_video(tmp_path / "walk.mp4", sprite_clip(4))
    pairs = VideoData.build(tmp_path, size=size, cache_dir=tmp_path / "cache").pairs("train")
    x1, x2, _ = pairs.sample_pairs(3, np.random.default_rng(0))
    assert x1.shape == x2.shape == (3, 3, size, size)


def test_pair_frames_are_distinct_and_within_the_gap(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_frames(clips / "a", counting_clip(40))
    write_frames(clips / "b", counting_clip(5))
    data = VideoData.build(clips, size=16, cache_dir=tmp_path / "cache")
    pairs = VideoPairs([(f, 0, len(f)) for f in data.frames], max_gap=3)
    rng = np.random.default_rng(0)
    for max_gap, bound in [(None, 3), (1, 1), (10, 3)]:  # narrowed, never widened
        x1, x2, _ = pairs.sample_pairs(2000, rng, max_gap=max_gap)
        i, j = (np.rint(x[:, 0, 0, 0].numpy() * 255 / 4) for x in (x1, x2))
        gap = np.abs(i - j)
        assert gap.min() >= 1 and gap.max() == bound
    # every frame of the split is drawn, at the ends too
    seg, i, j = pairs.sample_indices(4000, rng)
    assert set(i[seg == 0]) == set(range(40)) and set(j[seg == 1]) == set(range(5))
    assert pairs.max_gap == 3 and VideoPairs([(data.frames[0], 0, 40)]).max_gap == DEFAULT_MAX_GAP


def test_one_video_is_split_in_time(tmp_path):
    write_frames(tmp_path / "only", counting_clip(40))
    data = VideoData.build(tmp_path, size=16, cache_dir=tmp_path / "cache")
    assert data.report.train == data.report.val and "split in time" in data.report.split_rule
    for split, frames in [("train", range(0, 36)), ("val", range(36, 40))]:
        x1, x2, _ = data.pairs(split).sample_pairs(500, np.random.default_rng(0))
        seen = set(np.rint(x1[:, 0, 0, 0].numpy() * 255 / 4).astype(int))
        assert seen == set(frames)


def test_cache_hit_skips_decoding_and_settings_change_the_key(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_video(clips / "walk.mp4", sprite_clip(40, 240, 320))
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    first = VideoData.build(clips, size=32, cache_dir=cache)
    t_decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = VideoData.build(clips, size=32, cache_dir=cache)
    t_cached = time.perf_counter() - t0
    assert not first.report.clips[0].cached and second.report.clips[0].cached
    assert t_cached < t_decode
    np.testing.assert_array_equal(first.frames[0], second.frames[0])
    assert isinstance(second.frames[0], np.memmap)
    # the key is the content: a renamed copy hits, a new size or crop decodes again
    (clips / "walk.mp4").rename(clips / "renamed.mp4")
    assert VideoData.build(clips, size=32, cache_dir=cache).report.clips[0].cached
    for kwargs in [{"size": 16}, {"size": 32, "crop": (0, 0, 100, 100)}, {"size": 32, "max_frames": 10}]:
        again = VideoData.build(clips, cache_dir=cache, **kwargs).report.clips[0]
        assert not again.cached and again.cache_file != first.report.clips[0].cache_file
    assert VideoData.build(clips, size=32, cache_dir=cache, max_frames=10).frames[0].shape[0] == 10
    assert not list(cache.glob(".*"))  # no temporary files left


def test_frame_cap_keeps_evenly_spaced_frames(tmp_path):
    write_frames(tmp_path / "a", counting_clip(41))
    frames = VideoData.build(tmp_path, size=16, max_frames=5, cache_dir=tmp_path / "cache").frames[0]
    np.testing.assert_array_equal(frames[:, 0, 0, 0], np.array([0, 10, 20, 30, 40]) * 4)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_camera_motion_flags_a_pan_not_a_moving_sprite(tmp_path, size):
    write_video(tmp_path / "still.mp4", sprite_clip(16))
    write_video(tmp_path / "pan.mp4", pan_clip(16))
    report = VideoData.build(tmp_path, size=size, cache_dir=tmp_path / "cache").report
    change = {c.path.name: c.background_change for c in report.clips}
    assert change["still.mp4"] < 0.05 and change["pan.mp4"] > 0.5
    assert [p.name for p in report.moving_camera] == ["pan.mp4"] and MOVING_CAMERA < 0.5
    assert "warning: pan.mp4" in report.format()


def test_nothing_usable_is_a_typed_error(tmp_path):
    with pytest.raises(VideoDataError, match="no such folder"):
        VideoData.build(tmp_path / "missing")
    with pytest.raises(VideoDataError, match="the folder is empty"):
        VideoData.build(tmp_path, cache_dir=tmp_path / "cache")
    (tmp_path / "x.mp4").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"no usable clip \(x.mp4: unreadable or corrupt"):
        VideoData.build(tmp_path, cache_dir=tmp_path / "cache")


def test_pair_source_reads_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EQSDK_VIDEO_CACHE", str(tmp_path / "cache"))
    clips = tmp_path / "clips"
    clips.mkdir()
    for k in range(3):
        write_frames(clips / f"c{k}", sprite_clip(4, seed=k))
    load_videos.cache_clear()
    train = pair_source(f"videos:{clips}", "train", 0)
    val = pair_source(f"videos:{clips}", "val", 0)
    x1, x2, tx = train.sample_pairs(4, np.random.default_rng(0), max_gap=1, augment=True, recolour=0.5)
    assert x1.shape == (4, 3, 64, 64) and tx is None
    assert len(train.segments) == 2 and len(val.segments) == 1
    assert (tmp_path / "cache").is_dir()
    with pytest.raises(ValueError, match="split 'test'"):
        pair_source(f"videos:{clips}", "test", 0)


def test_cli_prints_the_report_and_writes_a_sheet(footage, tmp_path, capsys):
    main([str(footage), "--size", "32", "--cache-dir", str(tmp_path / "cache"), "--sheet", str(tmp_path / "s.png")])
    out = capsys.readouterr().out
    assert "usable clips" in out and "rejected notes.txt" in out and "bg change" in out
    assert Image.open(tmp_path / "s.png").size[0] > 4 * 64
    for argv, message in [([str(tmp_path / "nope")], "no such folder"), ([str(footage), "--crop", "1,2"], "x,y,w,h"),
                          ([str(footage), "--max-gap", "0"], "--max-gap: got 0")]:
        with pytest.raises(SystemExit) as e:
            main(argv + ["--cache-dir", str(tmp_path / "cache")])
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_augment_mirrors_both_frames_of_a_pair_together(tmp_path):
    frames = counting_clip(10)
    frames[:, :, :4] = 255  # a bright band on the left of every frame
    write_frames(tmp_path / "a", frames)
    pairs = VideoData.build(tmp_path, size=16, cache_dir=tmp_path / "cache").pairs("train")
    x1, x2, _ = pairs.sample_pairs(200, np.random.default_rng(0), augment=True)
    left1, left2 = (x[:, 0, 8, 0] == 1 for x in (x1, x2))  # the band on the left, not mirrored
    assert (left1 == left2).all() and 0.3 < left1.float().mean() < 0.7
    x1, _, _ = pairs.sample_pairs(50, np.random.default_rng(0))
    assert (x1[:, 0, 8, 0] == 1).all()  # no augment, no mirroring


def test_a_damaged_cache_entry_is_decoded_again_and_an_unwritable_cache_is_bad_input(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_frames(clips / "a", counting_clip(5))
    cache = tmp_path / "cache"
    first = VideoData.build(clips, size=16, cache_dir=cache).report.clips[0]
    first.cache_file.write_bytes(b"\x93NUMPY garbage")
    again = VideoData.build(clips, size=16, cache_dir=cache)
    assert not again.report.clips[0].cached and again.frames[0].shape == (5, 3, 16, 16)
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(VideoDataError, match="video cache .*: cannot write"):
        VideoData.build(clips, size=16, cache_dir=blocked / "cache")
