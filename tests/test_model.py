"""The four networks: shapes, T^Z's identity start, the plain-op sampling grid, learning."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dataclasses import replace

from train.model import ModelConfig, SceneModel, Transform, affine_grid, base_grid, grow_from, turn_about
from train.moving_mnist import MovingMNIST

TINY = ModelConfig(channels=16, res_blocks=1, tz_hidden=16)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SceneModel(TINY)


def test_shapes(model):
    x = torch.rand(3, 3, 64, 64)
    z = model.f_c(x)
    assert z.shape == model.f_b(x).shape == (3, 16, 16, 16)
    theta, origin, moved = model.t_z(z, z.flip(0), z)
    assert theta.shape == (3, 2, 3) and moved.shape == z.shape
    assert model.g(moved, z).shape == (3, 3, 64, 64)
    assert model(x, x, x, x).shape == (3, 3, 64, 64)


def test_tz_starts_as_the_identity(model):
    z = torch.randn(4, 16, 16, 16)
    theta, _, moved = model.t_z(z, torch.randn_like(z), z)
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(4, 2, 3)
    assert torch.equal(theta, identity)
    torch.testing.assert_close(moved, z, atol=1e-5, rtol=0)


def test_tz_depends_on_input_order(model):
    torch.nn.init.normal_(model.t_z.head[-1].weight, std=0.1)
    a, b = torch.randn(2, 1, 16, 16, 16)
    assert not torch.allclose(model.t_z.theta(a, b), model.t_z.theta(b, a))


def test_nearest_rigid_is_the_polar_factor_and_keeps_translation():
    theta = torch.randn(16, 2, 3)
    rigid = Transform.nearest_rigid(theta, eps=0)
    u, _, vh = torch.linalg.svd(theta[:, :, :2])
    polar = u @ vh  # the nearest orthogonal matrix
    keep = torch.linalg.det(polar) > 0  # a reflection's nearest rotation is another matter
    torch.testing.assert_close(rigid[keep, :, :2], polar[keep], atol=1e-5, rtol=0)
    torch.testing.assert_close(rigid[:, :, 2], theta[:, :, 2])
    det = torch.linalg.det(rigid[:, :, :2])
    torch.testing.assert_close(det, torch.ones(16), atol=1e-5, rtol=0)


def test_rigid_tz_starts_as_the_identity_and_stays_rigid():
    torch.manual_seed(0)
    t_z = SceneModel(replace(TINY, tz_rigid=True)).t_z
    z = torch.randn(2, 16, 16, 16)
    torch.testing.assert_close(t_z.theta(z, z.flip(0)), torch.eye(2, 3).expand(2, 2, 3), atol=1e-5, rtol=0)
    torch.nn.init.normal_(t_z.head[-1].weight, std=0.1)
    a = t_z.theta(z, z.flip(0))[:, :, :2]
    torch.testing.assert_close(a @ a.transpose(1, 2), torch.eye(2).expand(2, 2, 2), atol=1e-5, rtol=0)


def test_compose_samples_by_delta_then_by_theta():
    theta, delta = torch.randn(2, 4, 2, 3)
    points = torch.randn(4, 2, 1)  # output coordinates
    through_delta = delta[:, :, :2] @ points + delta[:, :, 2:]
    expected = theta[:, :, :2] @ through_delta + theta[:, :, 2:]
    combined = Transform.compose(theta, delta)
    torch.testing.assert_close(combined[:, :, :2] @ points + combined[:, :, 2:], expected)


def test_invert_undoes_an_affine():
    theta = torch.eye(2, 3) + 0.3 * torch.randn(4, 2, 3)
    torch.testing.assert_close(Transform.compose(theta, Transform.invert(theta)),
                               torch.eye(2, 3).expand(4, 2, 3), atol=1e-5, rtol=0)


def test_symmetric_tz_averages_both_readings():
    torch.manual_seed(0)
    t_z = SceneModel(replace(TINY, tz_rigid=True, tz_symmetric=True)).t_z
    z1, z2 = torch.randn(2, 3, 16, 16, 16)
    torch.testing.assert_close(t_z.theta(z1, z2), torch.eye(2, 3).expand(3, 2, 3), atol=1e-5, rtol=0)
    torch.nn.init.normal_(t_z.head[-1].weight, std=0.1)
    forward, backward = t_z.read(z1, z2), t_z.read(z2, z1)
    assert not torch.allclose(forward, Transform.invert(backward), atol=1e-3)  # two different readings
    expected = Transform.nearest_rigid(0.5 * (forward + Transform.invert(backward)))
    torch.testing.assert_close(t_z.theta(z1, z2), expected)
    swapped = Transform.nearest_rigid(0.5 * (backward + Transform.invert(forward)))
    torch.testing.assert_close(t_z.theta(z2, z1), swapped)
    # to first order in the readings' disagreement, swapping the inputs inverts theta
    torch.testing.assert_close(swapped, Transform.invert(expected), atol=0.05, rtol=0)


def test_plain_op_grid_matches_affine_grid():
    theta = torch.randn(5, 2, 3)
    expected = F.affine_grid(theta, [5, 1, 16, 16], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, base_grid(16)), expected, atol=1e-6, rtol=0)


@pytest.mark.data("mnist")
def test_loss_falls_on_a_tiny_overfit(model):
    data = MovingMNIST("train", n_backgrounds=2)
    x1, x2, _ = data.sample_pairs(8, np.random.default_rng(0))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(80):
        out = model.losses(x1, x2)
        loss = out["scene"] + 0.1 * out["equiv"] + 0.1 * out["inv"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(out["scene"].item())
    assert losses[-1] < 0.2 * losses[0]


def test_growing_the_decoder_keeps_the_render(model):
    for p in model.g.parameters():  # a trained-looking decoder, not the zero-ish start
        torch.nn.init.normal_(p, std=0.2)
    grown = SceneModel(replace(TINY, decoder_extra=2))
    grow_from(grown, model)
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in model.parameters())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grown(x, x, x.flip(0), x), model(x, x, x.flip(0), x))


def test_starting_from_a_grown_decoder_keeps_its_extra_layers(model):
    grown = SceneModel(replace(TINY, decoder_extra=2))
    for p in grown.g.parameters():  # trained extra layers, not the identity
        torch.nn.init.normal_(p, std=0.2)
    again = SceneModel(replace(TINY, decoder_extra=2))
    grow_from(again, grown)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x, x, x.flip(0), x), grown(x, x, x.flip(0), x))


def test_a_motion_acts_about_the_moved_characters_own_centre(model):
    theta = torch.tensor([[[0.9, -0.3, 0.1], [0.3, 0.9, -0.2]]])
    origin, centre = torch.tensor([[-0.4, 0.2]]), torch.tensor([[0.3, -0.1]])
    torch.testing.assert_close(model.t_z.recentre(theta, origin, origin), theta)
    moved = model.t_z.recentre(theta, origin, centre)
    p = torch.rand(5, 2) * 2 - 1
    apply = lambda t, q: q @ t[0, :, :2].T + t[0, :, 2]  # noqa: E731
    d = centre - origin
    torch.testing.assert_close(apply(moved, p + d), apply(theta, p) + d)  # same motion, shifted by d


def test_centre_finds_the_character(model):
    z = torch.zeros(1, 16, 16, 16)
    z[0, :, 2:4, 11:13] = torch.randn(16, 2, 2)  # a character at rows 2-3, columns 11-12
    x, y = model.t_z.centre(z)[0].tolist()
    assert abs(x - (12 / 16 * 2 - 1)) < 0.05 and abs(y - (3 / 16 * 2 - 1)) < 0.05


def test_turn_about_keeps_its_centre_and_turns_by_the_angle():
    c = torch.tensor([[0.3, -0.2], [0.0, 0.0]])
    t = turn_about(c, 30)
    torch.testing.assert_close((t[:, :, :2] @ c.unsqueeze(-1)).squeeze(-1) + t[:, :, 2], c)
    torch.testing.assert_close(torch.rad2deg(torch.atan2(t[:, 1, 0], t[:, 0, 0])), torch.full((2,), 30.0))
