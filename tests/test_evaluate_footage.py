"""train.evaluate_footage: a tiny model trained for 2 steps on real MP4 clips by `eqsdk train`, then
evaluated on its held-out video; the figures checked against hand computations and against
renderers whose answers are known (the identity on x_b, an oracle that returns x_t2, one that
moves the whole frame)."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from eqsdk.cli import main as eqsdk_main
from tests.test_videos import sprite_clip, texture, write_video
from train.evaluate_footage import (MIN_CHANGE, bucket_metrics, character_region, evaluate, evaluate_run,
                                    gap_buckets, main, markdown, measure, overlapping, sample_pairs,
                                    transfer_rows)
from train.videos import VideoData, load_videos

pytest.importorskip("av")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder of `eqsdk train` on three 12-frame clips (one held out), 2 steps at 32x32."""
    d = tmp_path_factory.mktemp("footage")
    clips = d / "clips"
    clips.mkdir()
    for k in range(3):
        write_video(clips / f"walk{k}.mp4", sprite_clip(12, seed=k))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EQSDK_VIDEO_CACHE", str(d / "cache"))
        assert eqsdk_main(["train", str(clips), "--out", str(d / "run"), "--steps", "2", "--size", "32",
                           "--batch", "8", "--sample-every", "0", "--threads", "1"]) == 0
        yield d / "run"


@pytest.fixture(scope="module")
def evaluated(run):
    return evaluate_run(run, pairs=10_000, seed=0)  # more than any bucket holds: every pair


def val_frames(metrics) -> np.ndarray:
    """(N, 3, 32, 32) uint8: the held-out video as the run reads it."""
    data = load_videos(metrics["checkpoint"]["dataset"].split(":", 1)[1], 32, None)
    (v, start, stop), = data.segments["val"]
    return np.asarray(data.frames[v][start:stop])


def test_files_are_written_and_the_figures_are_finite_and_in_range(run, evaluated):
    out = run / "eval"
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(evaluated))
    assert "| 1-8 (training) |" in (out / "metrics.md").read_text()
    with Image.open(out / "transfer.png") as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 150
    b = evaluated["buckets"]
    assert list(b) == ["1-8", "1", "2-8", "9-16", "17-32"]
    ordered = lambda lo, hi: 2 * sum(12 - d for d in range(lo, min(hi, 11) + 1))  # noqa: E731 (12 frames)
    assert [b[k]["pairs"] for k in b] == [ordered(1, 8), 22, ordered(2, 8), ordered(9, 16), 0]  # all; none at 17+
    assert b["17-32"]["reconstruction"]["model_mse"] is None and b["17-32"]["reconstruction"]["model_psnr"] is None
    for name in ("1-8", "1", "2-8", "9-16"):
        r, s = b[name]["reconstruction"], b[name]["background"]
        for key in ("model", "video_frames"):
            mse = r[f"{key}_mse"]["mean"]
            assert 0 < mse < 255 ** 2
            assert r[f"{key}_psnr"] == pytest.approx(10 * math.log10(255 ** 2 / mse))
            assert 0 < r[f"{key}_psnr"] < 60
        assert r["model_vs_video_frames"] == pytest.approx(r["model_mse"]["mean"] / r["video_frames_mse"]["mean"])
        assert 0 <= s["outside"]["mean"] < 255 and 0 <= s["inside"]["mean"] < 255
        assert 0 < s["region_share"] < 1
        # two steps leave T^Z near the identity: the character hardly moves, so no ratio
        assert (s["outside_vs_inside"] is None) == (s["inside"]["mean"] < MIN_CHANGE)
    assert evaluated["ratios"]["reconstruction_vs_video_frames"] == b["1-8"]["reconstruction"]["model_vs_video_frames"]
    assert evaluated["checkpoint"]["step"] == 2 and evaluated["max_gap"] == 8 and evaluated["held_out"]


def test_frames_that_training_also_saw_are_said_to_be_so(evaluated):
    assert not overlapping({"train": [(0, 0, 10), (1, 0, 5)], "val": [(0, 10, 12), (2, 0, 5)]})  # split in time
    assert overlapping({"train": [(0, 0, 4)], "val": [(0, 0, 4)]})  # one clip too short to split: both use it
    assert "also training frames" not in markdown(evaluated)
    assert "also training frames" in markdown({**evaluated, "held_out": False})


def test_the_video_frames_baseline_is_the_one_computed_by_hand(evaluated):
    f = val_frames(evaluated).astype(np.float64)
    by_hand = np.mean([np.mean((f[i] - f[j]) ** 2) for i in range(len(f)) for j in range(len(f)) if abs(i - j) == 1])
    assert evaluated["buckets"]["1"]["reconstruction"]["video_frames_mse"]["mean"] == pytest.approx(by_hand, rel=1e-6)


def test_one_sampled_pair_by_hand(run, evaluated):
    data = load_videos(evaluated["checkpoint"]["dataset"].split(":", 1)[1], 32, None)
    rows = sample_pairs(data.segments["val"], (2, 8), 5, np.random.default_rng(0))
    assert len(rows) == 5 and all(2 <= abs(i - j) <= 8 for _, i, j in rows)
    (v, i, j) = rows[0]
    per = measure(lambda c, t1, t2, b: t2 * 0 + 0.5, data, rows[:1], CPU)  # a flat grey render
    x_i, x_j = (np.asarray(data.frames[v][k], np.float64) for k in (i, j))
    assert per["video_frames"][0] == pytest.approx(np.mean((x_i - x_j) ** 2), rel=1e-6)
    assert per["model"][0] == pytest.approx(np.mean((127.5 - x_j) ** 2), rel=1e-6)
    assert per["outside"][0] == 0 and per["inside"][0] == 0  # the same render whatever the motion


def test_sampled_pairs_are_uniform_over_ordered_pairs_of_the_bucket():
    segments = [(0, 0, 5), (1, 10, 30)]  # lengths 5 and 20
    rows = sample_pairs(segments, (1, 3), 20_000, np.random.default_rng(1))
    gaps = np.abs(rows[:, 1] - rows[:, 2])
    assert gaps.min() == 1 and gaps.max() == 3
    assert np.all((rows[rows[:, 0] == 1][:, 1:] >= 10) & (rows[rows[:, 0] == 1][:, 1:] < 30))
    share = (rows[:, 0] == 0).mean()  # ordered pairs at gaps 1-3: 2(4+3+2) = 18 of 18 + 2(19+18+17) = 126
    assert share == pytest.approx(18 / 126, abs=0.01)
    assert (rows[:, 1] < rows[:, 2]).mean() == pytest.approx(0.5, abs=0.02)
    every = sample_pairs(segments, (1, 3), 126, np.random.default_rng(1))
    assert len(every) == 126 == len({tuple(r) for r in every.tolist()})
    assert len(sample_pairs(segments, (20, 40), 10, np.random.default_rng(1))) == 0


def test_gap_buckets():
    assert gap_buckets(8) == [(1, 8), (1, 1), (2, 8), (9, 16), (17, 32)]
    assert gap_buckets(1) == [(1, 1), (2, 2), (3, 4)]


def square_video(n=6, size=32):
    """(n, 3, S, S) uint8: a still texture with a white square moving right 3 pixels a frame."""
    bg = texture(size, size, seed=3).transpose(2, 0, 1)
    frames = np.repeat(bg[None], n, 0)
    for k in range(n):
        frames[k, :, 12:20, 4 + 3 * k:12 + 3 * k] = 255
    return frames


def test_background_stability_separates_a_renderer_that_moves_only_the_character_from_one_that_moves_the_frame():
    frames = square_video()
    data = VideoData(None, [frames], {"val": [(0, 0, len(frames))]})
    rows = sample_pairs(data.segments["val"], (1, 3), 1000, np.random.default_rng(0))
    oracle = measure(lambda c, t1, t2, b: t2, data, rows, CPU)  # moved: x_j exactly; still: x_i
    assert np.all(oracle["model"] == 0) and np.all(oracle["outside"] == 0) and np.all(oracle["inside"] > 10)
    b = bucket_metrics((1, 3), 3, oracle)
    assert b["background"]["outside_vs_inside"] == 0 and b["reconstruction"]["model_vs_video_frames"] == 0
    assert b["reconstruction"]["model_psnr"] is None  # identical images: no finite PSNR

    def pans(c, t1, t2, b):  # the whole frame moves with the character
        return t1 if torch.equal(t1, t2) else torch.roll(t2, 3, dims=-1)

    panned = measure(pans, data, rows, CPU)
    assert np.all(panned["outside"] > 5)
    assert bucket_metrics((1, 3), 3, panned)["background"]["outside_vs_inside"] > 0.2
    identity = measure(lambda c, t1, t2, b: b, data, rows, CPU)
    assert np.all(identity["outside"] == 0) and np.all(identity["inside"] == 0)
    assert np.array_equal(identity["model"], identity["video_frames"])
    assert bucket_metrics((1, 3), 3, identity)["background"]["outside_vs_inside"] is None  # nothing moves


def test_the_character_region_holds_both_positions_and_not_the_far_background():
    frames = torch.from_numpy(square_video().astype(np.float32) / 255)
    region = character_region(frames[:1], frames[3:4])[0, 0]  # squares at x 4-11 and 13-20, y 12-19
    expected = torch.zeros(32, 32)
    expected[10:22, 2:23] = 1  # both squares, 1 pixel of box average and 1 of dilation (32 / 32) around
    assert torch.equal(region, expected)


def test_evaluate_with_the_identity_on_x_b_has_ratio_1_and_no_background_change(run, evaluated):
    data = load_videos(evaluated["checkpoint"]["dataset"].split(":", 1)[1], 32, None)
    metrics, png = evaluate(lambda c, t1, t2, b: b, data, 8, 50, 0, CPU)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    for b in metrics["buckets"].values():
        if b["pairs"]:
            assert b["reconstruction"]["model_vs_video_frames"] == pytest.approx(1, abs=1e-6)
            assert b["background"]["outside"]["mean"] == 0 and b["background"]["inside"]["mean"] == 0


def test_transfer_drives_a_by_b_with_two_held_out_videos(run, evaluated, tmp_path):
    folder = evaluated["checkpoint"]["dataset"].split(":", 1)[1]
    data = VideoData.build(folder, 32, val_fraction=0.6, cache_dir=tmp_path)  # 2 of the 3 clips held out
    metrics, _ = evaluate(lambda c, t1, t2, b: b, data, 8, 4, 0, CPU)
    cases = metrics["transfer"]
    assert len(cases) == 2 and all(c["a"] != c["b"] for c in cases)
    case = dict(cases[0])
    b, a, driven = transfer_rows(lambda c, t1, t2, x_b: x_b, data, case, CPU)  # the identity on x_b: A itself
    assert len(b) == len(driven) == 8 and torch.equal(driven, a.expand_as(driven))
    _, _, driven = transfer_rows(lambda c, t1, t2, x_b: t2, data, case, CPU)  # x_t2: B's frames
    assert torch.equal(driven, b)
    _, _, driven = transfer_rows(lambda c, t1, t2, x_b: c * 0 + t1, data, case, CPU)  # x_t1: B's first frame
    assert torch.equal(driven, b[:1].expand_as(b))


def test_cli_writes_to_out_and_refuses_bad_input_with_one_line(run, tiny_checkpoint, tmp_path, capsys):
    main([str(run), "--out", str(tmp_path / "ev"), "--pairs", "3", "--seed", "1"])
    assert json.loads(capsys.readouterr().out)["ratios"]["reconstruction_vs_video_frames"] > 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["buckets"]["1"]["pairs"] == 3
    for argv, message in (([str(tiny_checkpoint), "--out", str(tmp_path / "no")], "expected a run of `eqsdk train"),
                          ([str(tmp_path / "missing"), "--out", str(tmp_path / "no")], "no such checkpoint"),
                          ([str(run), "--out", str(tmp_path / "no"), "--pairs", "0"], "pairs: got 0, expected")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1
        assert not (tmp_path / "no").exists()


@pytest.mark.slow
def test_the_metrics_are_recorded_in_a_bundle_and_shown_by_eqsdk_info(run, evaluated, tmp_path, capsys):
    from export.to_onnx import export_bundle

    manifest = export_bundle(run / "last.pt", tmp_path / "bundle", "mine", evaluation=evaluated)
    assert manifest.evaluation["ratios"]["reconstruction_vs_video_frames"] == pytest.approx(
        evaluated["ratios"]["reconstruction_vs_video_frames"])
    assert manifest.evaluation["buckets"]["17-32"]["pairs"] == 0
    assert eqsdk_main(["info", "--model", str(tmp_path / "bundle")]) == 0
    assert "reconstruction_vs_video_frames = " in capsys.readouterr().out
