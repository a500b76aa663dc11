"""The Moving MNIST generator: motions, canvas bounds, backgrounds, pairs, determinism."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.backgrounds import (PALETTE, PALETTE_NAMES, RADIUS_RANGE, make_background, make_backgrounds,
                               recolour_backgrounds)
from train.moving_mnist import (ROTATIONS, TRANSLATIONS, MovingMNIST, affine_inverse, distinct_frames,
                                motion, transfer)


@pytest.fixture(scope="module")
def data():
    return MovingMNIST("test", n_backgrounds=8)


def white(n, s=64):
    return torch.ones(n, 3, s, s)


@pytest.mark.data("mnist")
def test_tx_maps_frame_i_onto_frame_j(data):
    rng = np.random.default_rng(0)
    videos = data.sample_videos(16, rng)
    i, j = distinct_frames(data.frames, 16, rng)
    b = np.arange(16)
    si, sj = videos.states[b, i], videos.states[b, j]
    xi = data.render(videos.digits, si, white(16))
    xj = data.render(videos.digits, sj, white(16))
    theta = torch.from_numpy(affine_inverse(motion(si[:, 0], sj[:, 0], 64))).float()
    grid = F.affine_grid(theta, [16, 3, 64, 64], align_corners=False)
    warped = F.grid_sample(xi, grid, padding_mode="border", align_corners=False)
    moved_err = (warped - xj).square().mean((1, 2, 3))
    unmoved_err = (xi - xj).square().mean((1, 2, 3))
    assert unmoved_err.mean() > 0.01  # the digits did move
    assert (moved_err < 0.2 * unmoved_err + 1e-4).all()  # only resampling blur remains
    assert moved_err.mean() < 0.05 * unmoved_err.mean()


@pytest.mark.data("mnist")
def test_transfer_of_a_motion_to_its_own_digit_is_the_motion(data):
    videos = data.sample_videos(4, np.random.default_rng(1))
    s = videos.states[:, :, 0]
    np.testing.assert_allclose(transfer(s[:, 0], s[:, 0], s[:, 4]), s[:, 4], atol=1e-9)


@pytest.mark.data("mnist")
def test_digits_stay_in_the_canvas_and_steps_follow_the_recipe(data):
    videos = data.sample_videos(200, np.random.default_rng(2))
    digits, states = np.repeat(videos.digits, 5, 0), videos.states.reshape(-1, 1, 3)
    ink = 1 - data.render(digits, states, white(1000))
    # The same frames on a canvas with a 16-pixel margin: nothing of the ink may be cut off.
    padded = MovingMNIST.__new__(MovingMNIST)
    padded.digits, padded.size = data.digits, 96
    ink_padded = 1 - padded.render(digits, states + [16, 16, 0], white(1000, 96))
    torch.testing.assert_close(ink.sum((1, 2, 3)), ink_padded.sum((1, 2, 3)), rtol=1e-4, atol=1e-2)
    for d, states in zip(videos.digits[:, 0], videos.states[:, :, 0]):
        assert all(data.inside(d, s) for s in states)
        for a, b in zip(states[:-1], states[1:]):
            delta = np.round(b - a, 6)
            if delta[2] != 0:  # a rotation about the centre
                assert delta[2] in ROTATIONS and delta[0] == delta[1] == 0
            else:  # a translation on both axes
                assert delta[0] in TRANSLATIONS and delta[1] in TRANSLATIONS


def test_backgrounds_follow_the_recipe():
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, recipe = make_background(rng)
        assert image.shape == (64, 64, 3) and image.dtype == np.float32
        colours = [recipe["colour"]] + [d["colour"] for d in recipe["diamonds"]]
        assert "black" not in colours and len(set(colours)) == 6
        assert len(recipe["diamonds"]) == 5
        for d in recipe["diamonds"]:
            assert RADIUS_RANGE[0] <= d["radius"] <= RADIUS_RANGE[1]
        last = recipe["diamonds"][-1]  # drawn on top: its centre shows its colour
        cx, cy = last["centre"]
        np.testing.assert_array_equal(image[cy, cx], PALETTE[PALETTE_NAMES.index(last["colour"])])
        assert not (image == 0).all(-1).any()  # no black pixel anywhere


def test_background_splits_are_fixed_and_distinct():
    a, b = make_backgrounds("train", 64, seed=0), make_backgrounds("train", 64, seed=0)
    assert a.shape == (64, 64, 64, 3)
    assert np.array_equal(a, b)  # same seed, same bytes
    test = make_backgrounds("test", 64, seed=0)
    assert not any(np.array_equal(x, y) for x in a for y in test)


def test_pairs_are_distinct_frames_within_the_gap():
    rng = np.random.default_rng(4)
    i, j = distinct_frames(5, 5000, rng)
    assert (i != j).all() and set(np.abs(i - j)) == {1, 2, 3, 4}
    i, j = distinct_frames(5, 5000, rng, max_gap=1)
    assert (np.abs(i - j) == 1).all()


@pytest.mark.data("mnist")
def test_sample_pairs_shapes_and_determinism():
    data = MovingMNIST("train", n_digits=2, n_backgrounds=4)
    x1, x2, tx = data.sample_pairs(6, np.random.default_rng(5), augment=True)
    y1, _, ty = data.sample_pairs(6, np.random.default_rng(5), augment=True)
    assert x1.shape == x2.shape == (6, 3, 64, 64) and tx.shape == (6, 2, 2, 3)
    assert torch.equal(x1, y1) and np.array_equal(tx, ty)
    assert 0 <= x1.min() and x1.max() <= 1


def test_recolouring_keeps_the_layout_and_draws_palette_colours():
    bgs = torch.from_numpy(make_backgrounds("train", 6, seed=0)).permute(0, 3, 1, 2)
    out = recolour_backgrounds(bgs, np.random.default_rng(0), p=1.0)
    palette = torch.from_numpy(PALETTE)
    for before, after in zip(bgs, out):
        old = torch.unique(before.flatten(1).T, dim=0, return_inverse=True)[1]  # (S*S,) region
        colours, new = torch.unique(after.flatten(1).T, dim=0, return_inverse=True)
        assert not torch.equal(before, after)
        # the same regions: old and new labels pair one to one, so all colours stay different
        assert len(torch.unique(old * 100 + new)) == len(torch.unique(old)) == len(colours)
        assert all((palette == c).all(1).any() for c in colours)  # palette colours, never black
    kept = recolour_backgrounds(bgs, np.random.default_rng(0), p=0.0)
    assert torch.equal(kept, bgs)
