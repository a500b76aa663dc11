"""Training and evaluating sprites models (§4.4) on CPU in seconds: tiny models, the first few
characters of each split (lpc's `limit` subsets, rendered into a temporary cache from the layer
sheets in about a second each, so a clean clone needs no prebuilt cache)."""
import json

import numpy as np
import pytest
import torch

from eqsdk.cli import evaluation_lines
from train import lpc
from train.checkpoint import read_checkpoint
from train.datasets import load_sprites
from train.evaluate_sprites import evaluate
from train.evaluate_sprites import main as evaluate_main
from train.train import main as train_main

pytestmark = pytest.mark.data("lpc")

CHARACTERS = 4
TINY = ["--channels", "16", "--res-blocks", "1", "--tz-hidden", "16", "--batch", "8", "--sample-every", "0",
        "--characters", str(CHARACTERS)]


@pytest.fixture(scope="module", autouse=True)
def subset_cache(tmp_path_factory):
    """Sprites subsets go to a temporary cache, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lpc, "DEFAULT_CACHE", tmp_path_factory.mktemp("lpc-cache"))
        yield


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three steps of training per sprites dataset."""
    out = {}
    for dataset, extra in (("sprites", []), ("sprites-bg", ["--n-backgrounds", "4"])):
        out[dataset] = tmp_path_factory.mktemp(dataset)
        train_main(["--out", str(out[dataset]), "--dataset", dataset, "--steps", "3", *TINY, *extra])
    return out


@pytest.mark.parametrize("dataset", ["sprites", "sprites-bg"])
def test_train_on_sprites_writes_a_checkpoint(checkpoints, dataset):
    ckpt = read_checkpoint(checkpoints[dataset] / "last.pt")
    assert ckpt["step"] == 3 and ckpt["samples"] == 24
    assert ckpt["train_config"]["dataset"] == dataset and ckpt["train_config"]["characters"] == CHARACTERS
    assert ckpt["model_config"]["channels"] == 16
    records = [json.loads(line) for line in (checkpoints[dataset] / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3 and "val_scene" in records[-1]
    assert records[-1]["tz_corr"] is None and records[-1]["tz_spread"] >= 0  # sprites have no T^X
    assert (checkpoints[dataset] / "samples.png").exists()


@pytest.mark.parametrize("options", [[], ["--backgrounds"], ["--canvas", "grey"], ["--split", "test-layers"],
                                     ["--split", "test", "--backgrounds"]])
def test_evaluate_sprites_writes_well_formed_metrics(checkpoints, tmp_path, options):
    model = "sprites-bg" if "--backgrounds" in options or "--canvas" in options else "sprites"
    backgrounds = "--backgrounds" in options
    evaluate_main([str(checkpoints[model] / "last.pt"), "--out", str(tmp_path), "--count", "60",
                   "--characters", str(CHARACTERS), *options])
    m = json.loads((tmp_path / "metrics.json").read_text())
    split = options[options.index("--split") + 1] if "--split" in options else "paper"
    assert m["split"] == split and m["characters"] == CHARACTERS and m["examples"] == 60
    regions = ["whole", "background_only", "character_only"] if backgrounds else ["whole"]
    assert set(m["mse"]) == {"analogy", "unchanged", "background", "reconstruction"}
    for method in m["mse"].values():
        assert list(method) == regions
        for region in method.values():
            assert list(region) == [*lpc.ANIMATIONS, "all"]
            assert region["all"]["n"] == 60
            assert sum(region[a]["n"] for a in lpc.ANIMATIONS if region[a]) == 60
    per_animation = m["targets"]["analogy_vs_unchanged"]["per_animation"]
    assert list(per_animation) == list(lpc.ANIMATIONS)
    assert all(isinstance(v["met"], bool) for v in per_animation.values())
    assert ("background_only_vs_whole" in m["targets"]) == backgrounds
    assert ("reconstruction_vs_unchanged" in m["targets"]) == (not backgrounds)
    assert m["targets"]["analogy_vs_unchanged"]["bar"] == (0.6 if backgrounds else 0.5)
    if backgrounds:  # outside B's masks, B_i and its background are B_j exactly
        assert m["mse"]["unchanged"]["background_only"]["all"]["mean"] == 0
        assert m["mse"]["background"]["background_only"]["all"]["mean"] == 0
    assert m["checkpoint"]["dataset"] == model and len(m["showcase"]) == 6
    for name in ("boxplot.png", "analogies.png", "metrics.md"):
        assert (tmp_path / name).stat().st_size > 0


def test_evaluate_sprites_on_several_splits_writes_one_folder_each_and_their_summary(checkpoints, tmp_path):
    evaluate_main([str(checkpoints["sprites"] / "last.pt"), "--out", str(tmp_path), "--count", "20",
                   "--characters", str(CHARACTERS), "--split", "paper", "test", "test-layers"])
    combined = json.loads((tmp_path / "metrics.json").read_text())
    assert list(combined["splits"]) == ["paper", "test", "test-layers"]
    for split, m in combined["splits"].items():
        assert m["split"] == split and m == json.loads((tmp_path / split / "metrics.json").read_text())
        assert (tmp_path / split / "analogies.png").stat().st_size > 0
    assert combined["all_met"] == all(m["all_met"] for m in combined["splits"].values())
    lines = evaluation_lines(combined)
    assert [line.split(":")[0] for line in lines[::2]] == ["paper", "test", "test-layers"]
    assert all("analogy_vs_unchanged" in line for line in lines[::2])


def hand_mse(frames: np.ndarray, background: np.ndarray, truth_frames: np.ndarray,
             region: np.ndarray | None = None) -> float:
    """MSE in 0-255 units of a (64, 64, 4) uint8 sprite over a (64, 64, 3) background in [0, 1]
    against another, in float64 from the raw frames."""
    def show(f):
        a = f[..., 3:] / 255.0
        return f[..., :3] / 255.0 * a + background * (1 - a)
    sq = ((show(frames) - show(truth_frames)) * 255) ** 2
    if region is None:
        return float(sq.mean())
    return float(sq[region].mean())


class AddMotion(torch.nn.Module):
    """A stand-in for h(x_c, x_t1, x_t2, x_b): x_c + (x_t2 - x_t1). Its analogy is not B_i, and on
    B's own pair it returns B_j exactly, which pins the argument order of both renders."""

    def forward(self, x_c, x_t1, x_t2, x_b):
        return x_c + x_t2 - x_t1


@pytest.mark.parametrize("with_backgrounds", [False, True])
def test_baseline_and_region_mse_match_a_hand_computation(with_backgrounds):
    sprites = load_sprites("test", 5 if with_backgrounds else 0, CHARACTERS)
    per, animation = evaluate(AddMotion(), sprites, 12, np.random.default_rng(0), with_backgrounds,
                              torch.device("cpu"))
    a = sprites.sample_analogies(12, np.random.default_rng(0), with_backgrounds)  # the same draws
    np.testing.assert_array_equal(animation, a.animation.numpy())
    frames = sprites.data.frames
    sequence = 4 * a.animation.numpy() + a.viewpoint
    for k in range(4):
        start = lpc.SEQ_STARTS[sequence[k]]
        bi, bj = frames[a.character_b[k], start + a.i[k]], frames[a.character_b[k], start + a.j[k]]
        if with_backgrounds:
            bg = sprites.backgrounds[a.background_b[k]].permute(1, 2, 0).double().numpy()
        else:
            bg = np.ones((64, 64, 3))
        assert per["unchanged"]["whole"][k] == pytest.approx(hand_mse(bi, bg, bj), rel=1e-5)
        assert per["unchanged"]["whole"][k] > 10  # B moves between frames i and j
        empty = np.zeros_like(bj)  # the background alone: a sprite with no pixels
        assert per["background"]["whole"][k] == pytest.approx(hand_mse(empty, bg, bj), rel=1e-5)
        if with_backgrounds:
            char = (bi[..., 3] > 0) | (bj[..., 3] > 0)
            assert per["unchanged"]["character_only"][k] == pytest.approx(hand_mse(bi, bg, bj, char), rel=1e-5)
            assert per["unchanged"]["background_only"][k] == 0
    assert per["reconstruction"]["whole"].max() < 1e-6  # h(B_i, B_i, B_j, B_i) = B_j for the stand-in
    assert not np.allclose(per["analogy"]["whole"], per["unchanged"]["whole"])
