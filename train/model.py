"""The four networks of §3-4.1: encoders f_c and f_b, the learned transform T^Z, the decoder g.

    render = h(x_c, x_t1, x_t2, x_b) = g(T^Z(f_c(x_t1), f_c(x_t2)) o f_c(x_c) + f_b(x_b))
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from eqsdk import motion_check


def config_from_dict(cls, values: dict):
    """A config dataclass rebuilt from the plain dict a checkpoint or manifest stores it as."""
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}; expected keys among "
                         f"{[f.name for f in fields(cls)]}")
    return cls(**values)


@dataclass(frozen=True)
class ModelConfig:
    image_size: int = 64  # square RGB input and output
    channels: int = 64  # C of the scene representation z: (C, image_size/4, image_size/4)
    res_blocks: int = 3  # residual blocks per encoder at feature resolution
    tz_hidden: int = 128  # width of T^Z's fully connected layer
    tz_keypoints: int = 8  # spatial-softmax keypoints whose positions T^Z sees (0: none)
    decoder_extra: int = 0  # extra 3x3 conv layers in g at each upsampled resolution (sharper edges)
    tz_rigid: bool = False  # T^Z's linear part projected onto the nearest rotation (no scale, shear)
    tz_symmetric: bool = False  # theta averages T^Z(z_t1, z_t2) with the inverse of T^Z(z_t2, z_t1)

    @property
    def feature_size(self) -> int:
        return self.image_size // 4

    def to_dict(self) -> dict:
        return asdict(self)

    from_dict = classmethod(config_from_dict)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class Encoder(nn.Module):
    """Residual conv encoder, image (B, 3, S, S) -> scene representation (B, C, S/4, S/4).
    f_c and f_b are two instances (same architecture, separate weights)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c // 2, 4, stride=2, padding=1), nn.ReLU(),  # S/2
            nn.Conv2d(c // 2, c, 4, stride=2, padding=1), nn.ReLU(),  # S/4
        )
        self.blocks = nn.Sequential(*[ResBlock(c) for _ in range(cfg.res_blocks)])
        self.out = nn.Conv2d(c, c, 1)  # linear: features may be negative, f_c + f_b is a sum

    def forward(self, x):
        return self.out(self.blocks(self.stem(x)))


class Decoder(nn.Module):
    """g: scene representation (B, C, S/4, S/4) -> image (B, 3, S, S), transposed convs, no
    residuals (§4.1). Takes the character and background parts and adds them itself."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.channels
        self.net = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), nn.ReLU(),  # S/2
            nn.Conv2d(c // 2, c // 2, 3, padding=1), nn.ReLU(),
            *self.extra(c // 2, cfg.decoder_extra),
            nn.ConvTranspose2d(c // 2, c // 2, 4, stride=2, padding=1), nn.ReLU(),  # S
            *self.extra(c // 2, cfg.decoder_extra),
            nn.Conv2d(c // 2, 3, 3, padding=1),
        )

    @staticmethod
    def extra(c: int, n: int) -> list[nn.Module]:
        """n conv + ReLU layers that start as the identity (Dirac kernels on non-negative inputs),
        so a decoder trained without them can be grown without changing what it renders."""
        layers = []
        for _ in range(n):
            conv = nn.Conv2d(c, c, 3, padding=1)
            nn.init.dirac_(conv.weight)
            nn.init.zeros_(conv.bias)
            conv.extra = True  # marks the layer for grow_from
            layers += [conv, nn.ReLU()]
        return layers

    def forward(self, z_char, z_bg):
        return self.net(z_char + z_bg)


def affine_grid(theta: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """F.affine_grid(theta, align_corners=False) from plain ops (MatMul), which ONNX at opset 18
    and TensorRT take as they are. theta (B, 2, 3), base (H, W, 3) -> grid (B, H, W, 2)."""
    h, w = base.shape[:2]
    return torch.matmul(base.reshape(1, h * w, 3), theta.transpose(1, 2)).reshape(-1, h, w, 2)


def base_grid(size: int) -> torch.Tensor:
    """Homogeneous pixel-centre coordinates (x, y, 1) in [-1, 1], (size, size, 3)."""
    lin = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1
    y, x = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


class Transform(nn.Module):
    """T^Z: (z_t1, z_t2) -> 2x3 affine theta, applied to z_c with a sampling grid + grid_sample.

    Input-order dependent (channel concatenation); initialised to the identity. GroupNorm and
    leaky ReLUs keep its units alive while the autoencoder is still learning. Besides its conv
    trunk it sees K keypoints of each input, the expected positions under a spatial softmax of
    learned feature maps (as in spatial-softmax keypoint networks): their displacement from z_t1
    to z_t2 is the motion almost linearly, which is what lets T^Z leave the identity early.
    theta maps output coordinates to input coordinates, as in grid_sample: it is the inverse of
    the image-space motion T^X. With cfg.tz_rigid its linear part is projected onto the nearest
    rotation: for scenes whose motions are rigid (Moving MNIST) scale and shear are only noise.
    With cfg.tz_symmetric, theta is the mean of T^Z(z_t1, z_t2) and the inverse of T^Z(z_t2, z_t1)
    (then made rigid again): two readings of one motion whose errors are partly independent, so
    their mean is steadier. It stays order dependent: swapping the inputs about inverts theta.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, f = cfg.channels, cfg.feature_size

        def block(c_in, stride):
            return [nn.Conv2d(c_in, c, 3 if stride == 1 else 4, stride, 1), nn.GroupNorm(8, c),
                    nn.LeakyReLU(0.2)]

        self.features = nn.Sequential(*block(2 * c, 1), *block(c, 2), *block(c, 2), nn.Flatten())
        k = cfg.tz_keypoints
        self.keypoints = nn.Conv2d(c, k, 1) if k else None
        self.head = nn.Sequential(nn.Linear(c * (f // 4) ** 2 + 6 * k, cfg.tz_hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(cfg.tz_hidden, 6))
        self.rigid = cfg.tz_rigid
        self.symmetric = cfg.tz_symmetric
        nn.init.zeros_(self.head[-1].weight)
        with torch.no_grad():
            self.head[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))
        self.register_buffer("base", base_grid(f), persistent=False)

    def keypoint_positions(self, z):
        """(B, C, F, F) -> (B, K, 2): (x, y) in [-1, 1] expected under each map's spatial softmax."""
        attention = torch.softmax(self.keypoints(z).flatten(2).float(), dim=-1)  # (B, K, F*F)
        return torch.matmul(attention, self.base.flatten(0, 1)[:, :2])

    @staticmethod
    def nearest_rigid(theta, eps: float = 1e-6):
        """theta (B, 2, 3) with its linear part A replaced by the nearest rotation (the polar
        factor of A; in 2-D its cos and sin are proportional to a11 + a22 and a21 - a12, so no
        SVD and no trigonometry: ONNX has no atan2). The translation column is kept."""
        a = theta[:, :, :2]
        c, s = a[:, 0, 0] + a[:, 1, 1], a[:, 1, 0] - a[:, 0, 1]
        norm = torch.sqrt(c * c + s * s + eps)
        c, s = c / norm, s / norm
        r = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], 1)
        return torch.cat([r, theta[:, :, 2:]], dim=2)

    @staticmethod
    def compose(theta, delta):
        """theta o delta, (B, 2, 3) each: sampling by the result is sampling by delta, then by
        theta (grid_sample's maps run from output to input coordinates)."""
        a = theta[:, :, :2]
        return torch.cat([a @ delta[:, :, :2], a @ delta[:, :, 2:] + theta[:, :, 2:]], dim=2)

    @staticmethod
    def invert(theta):
        """The inverse affine, (B, 2, 3) -> (B, 2, 3), from plain ops (the 2x2 adjugate)."""
        p, q, r, s = theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1]
        det = (p * s - q * r).view(-1, 1, 1)
        a_inv = torch.stack([torch.stack([s, -q], -1), torch.stack([-r, p], -1)], 1) / det
        return torch.cat([a_inv, -a_inv @ theta[:, :, 2:]], dim=2)

    def theta(self, z_t1, z_t2):
        """(B, C, F, F) x2 -> (B, 2, 3)."""
        if not self.symmetric:
            return self.read(z_t1, z_t2)
        theta = 0.5 * (self.read(z_t1, z_t2) + self.invert(self.read(z_t2, z_t1)))
        return self.nearest_rigid(theta) if self.rigid else theta

    def read(self, z_t1, z_t2):
        """One reading of the motion from z_t1 to z_t2: (B, C, F, F) x2 -> (B, 2, 3)."""
        h = self.features(torch.cat([z_t1, z_t2], dim=1))
        if self.keypoints is not None:
            k1, k2 = self.keypoint_positions(z_t1), self.keypoint_positions(z_t2)
            h = torch.cat([h, k1.flatten(1), k2.flatten(1), (k2 - k1).flatten(1)], dim=1).to(h.dtype)
        theta = self.head(h).view(-1, 2, 3)
        return self.nearest_rigid(theta.float()) if self.rigid else theta

    def apply(self, theta, z):
        """theta o z: warp the features z (B, C, F, F) by theta (B, 2, 3) with a sampling grid and
        grid_sample, as spatial transformers do (§4.1); the grid is built from plain ops."""
        grid = affine_grid(theta.to(z.dtype), self.base.to(z.dtype))
        return F.grid_sample(z, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def centre(self, z):
        """Where the character is: the centroid (x, y) in [-1, 1] of the features' energy about
        their spatial mean, (B, C, F, F) -> (B, 2)."""
        z = z.float()
        energy = (z - z.mean(dim=(2, 3), keepdim=True)).square().sum(1).flatten(1)  # (B, F*F)
        weights = energy / (energy.sum(1, keepdim=True) + 1e-12)
        return torch.matmul(weights, self.base.flatten(0, 1)[:, :2])

    @staticmethod
    def recentre(theta, origin, centre):
        """theta learned on a character at `origin`, moved to act about `centre` instead:
        theta'(p) = theta(p - d) + d with d = centre - origin. T^Z's affine rotates about the
        character it saw move; a character elsewhere must turn about its own position, as the
        ground truth of the Transformation manipulation does. In training x_c = x_t1: d = 0."""
        a, b = theta[:, :, :2], theta[:, :, 2]
        d = (centre - origin).to(theta.dtype)
        return torch.cat([a, (b - torch.matmul(a, d.unsqueeze(-1)).squeeze(-1) + d).unsqueeze(-1)], dim=2)

    def move(self, theta, origin, z_c):
        """z_c moved by theta, read about origin, about z_c's own centre instead: the transform-apply
        of T^Z (and the warp graph)."""
        return self.apply(self.recentre(theta, origin, self.centre(z_c)), z_c)

    def forward(self, z_t1, z_t2, z_c):
        """-> theta, the centre of z_t1 it is relative to (origin), and z_c moved about its own
        centre."""
        theta, origin = self.theta(z_t1, z_t2), self.centre(z_t1)
        return theta, origin, self.move(theta, origin, z_c)


def scene_loss(render: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """L_scene = ||h(x1, x1, x2, x1) - x2||² (eq. 4), mean over pixels: the render of the end frame."""
    return F.mse_loss(render.float(), x2)


def equiv_loss(z1_moved: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """L_equiv = ||T^Z(f_c(x1), f_c(x2)) o f_c(x1) - f_c(x2)||² (eq. 4), divided by the energy of
    both sides (scale-free, in [0, 2]): the plain norm falls by shrinking f_c, which g then undoes,
    and a detached divisor would let that shrinking feed itself until f_c collapses."""
    return F.mse_loss(z1_moved, z2) / (z1_moved.square().mean() + z2.square().mean() + 1e-8)


def inv_loss(b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """L_inv = ||f_b(x1) - f_b(x2)||² (eq. 4), divided by the detached energy of f_b(x2) for the
    same reason as L_equiv; f_b cannot collapse under it, the scene needs it."""
    return F.mse_loss(b1, b2) / (b2.detach().square().mean() + 1e-6)


class SceneModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.f_c, self.f_b = Encoder(cfg), Encoder(cfg)
        self.t_z = Transform(cfg)
        self.g = Decoder(cfg)

    def forward(self, x_c, x_t1, x_t2, x_b, checked: bool = False):
        """h(x_c, x_t1, x_t2, x_b) of §3: images (B, 3, S, S) -> image (B, 3, S, S). With x_c = x_t1 it
        is eq. 2, x_t2 = g(T^Z f(x_t1)): eq. 1's equivariance T^X g(z) = g(T^Z z) put to use. With
        `checked`, T^Z's theta is first checked by the renderer (checked_theta), as eqsdk does when
        asked."""
        z_t1, z_t2, z_c = self.f_c(x_t1), self.f_c(x_t2), self.f_c(x_c)
        if not checked:
            *_, z_moved = self.t_z(z_t1, z_t2, z_c)
        else:
            theta = self.checked_theta(z_t1, z_t2, x_t2, self.t_z.theta(z_t1, z_t2))
            z_moved = self.t_z.move(theta, self.t_z.centre(z_t1), z_c)
        return self.g(z_moved, self.f_b(x_b))

    def losses(self, x1, x2, keep_char: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The three terms of eq. 4 on training pairs x1, x2 (B, 3, S, S), plus theta and the render
        for monitoring.

        keep_char (B,) of 0/1 drops the character path from some renders (character dropout, early
        in training): those must come from f_b alone, so the static background settles in f_b and
        f_c is left the moving character. Without it f_c learns the whole scene, warping f_c
        would move the background too, and T^Z stays at the identity.
        """
        z1, z2 = self.f_c(torch.cat([x1, x2])).chunk(2)  # (B, C, F, F) each
        b1, b2 = self.f_b(torch.cat([x1, x2])).chunk(2)
        theta = self.t_z.theta(z1, z2)  # (B, 2, 3)
        with torch.autocast(x1.device.type, enabled=False):  # warp in fp32 even under autocast
            z1_moved = self.t_z.apply(theta.float(), z1.float())
        if keep_char is not None:
            z1_moved = z1_moved * keep_char.view(-1, 1, 1, 1).to(z1_moved.dtype)
        render = self.g(z1_moved, b1)  # h(x1, x1, x2, x1)
        return {"scene": scene_loss(render, x2), "equiv": equiv_loss(z1_moved, z2.float()),
                "inv": inv_loss(b1.float(), b2.float()),
                "theta": theta.detach().float(), "render": render.detach().float()}

    @torch.no_grad()
    def checked_theta(self, z_t1, z_t2, x_t2, theta):
        """T^Z's theta (B, 2, 3) for frames with features z_t1 -> z_t2, checked by the renderer
        against turns of it about the character (eqsdk.motion_check, which eqsdk applies the
        same way): the one whose render of the end frame x_t2 is clearly best. The renders take
        the background from x_t2 (f_b reads the same static background in either frame), so
        that a cached start frame needs only its f_c."""
        z_t1, b, theta = z_t1.float(), self.f_b(x_t2), theta.float()
        pivot = self.t_z.centre(z_t2)  # (B, 2): where the character is in x_t2
        tries = torch.stack([theta] + [self.t_z.compose(theta, turn_about(pivot, d))
                                       for d in motion_check.turns()])  # (K, B, 2, 3)
        losses = torch.stack([(self.g(self.t_z.apply(t, z_t1), b).float() - x_t2).square().mean(dim=(1, 2, 3))
                              for t in tries])  # (K, B)
        best = losses.argmin(0)
        # A turn must earn its place: near-symmetric shapes render alike at many turns.
        best = torch.where(losses.min(0).values < motion_check.MARGIN * losses[0], best, 0)
        return tries[best, torch.arange(len(theta))]


def turn_about(centre: torch.Tensor, degrees: float) -> torch.Tensor:
    """(B, 2) -> (B, 2, 3): the rotation by `degrees` about each centre, p -> R (p - c) + c."""
    a = math.radians(float(degrees))
    r = centre.new_tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]).expand(len(centre), 2, 2)
    return torch.cat([r, (centre - (r @ centre.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)], dim=2)


def grow_from(model: SceneModel, source: SceneModel) -> None:
    """Copy a trained model's weights into `model`, which may have extra decoder layers
    (ModelConfig.decoder_extra) that `source` lacks (a source that has them passes them on);
    new ones keep their identity start, so `model` renders exactly what `source` did and
    training goes on from there (with ModelConfig.tz_rigid, T^Z's output is projected onto
    rigid motions from then on)."""
    for name in ("f_c", "f_b", "t_z"):
        getattr(model, name).load_state_dict(getattr(source, name).state_dict())
    if source.cfg.decoder_extra == model.cfg.decoder_extra:  # nothing to grow: keep every layer
        model.g.load_state_dict(source.g.state_dict())
        return
    if source.cfg.decoder_extra:
        raise ValueError(f"can only grow a decoder without extra layers, not one with "
                         f"{source.cfg.decoder_extra}, to {model.cfg.decoder_extra}")
    targets = [m for m in model.g.net if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
               and not getattr(m, "extra", False)]
    sources = [m for m in source.g.net if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    if len(targets) != len(sources):
        raise ValueError(f"decoders differ beyond extra layers: {len(sources)} vs {len(targets)} layers")
    for t, s in zip(targets, sources):
        t.load_state_dict(s.state_dict())


@dataclass(frozen=True)
class ReaderConfig:
    width: int = 32  # channels of the reader's convolutions
    keypoints: int = 16  # spatial-softmax keypoints per frame
    hidden: int = 256  # width of the head's hidden layer

    def to_dict(self) -> dict:
        return asdict(self)

    from_dict = classmethod(config_from_dict)


class MotionReader(nn.Module):
    """T^Z's motion read from the frames themselves: (x_t1, x_t2) -> theta (B, 2, 3) and origin
    (B, 2), a small network trained to reproduce theta = T^Z(f_c(x_t1), f_c(x_t2)) and the centre
    of f_c(x_t1) that theta is relative to (train/distill.py). Not one of the paper's networks:
    on a driving frame it stands in for f_c and T^Z at a tenth of their FLOPs. It is built like
    them, narrower: a per-frame encoder to S/4, then T^Z's shape, the pair's features concatenated
    along channels and reduced by strided convolutions, beside K spatial-softmax keypoints of each
    frame."""

    def __init__(self, cfg: ModelConfig, rcfg: ReaderConfig = ReaderConfig()):
        super().__init__()
        self.rcfg, w, k, f = rcfg, rcfg.width, rcfg.keypoints, cfg.feature_size
        self.encode = nn.Sequential(  # overlapping strides, as f_c's: small turns move edges by a pixel
            nn.Conv2d(3, w // 2, 4, stride=2, padding=1), nn.ReLU(),  # S/2
            nn.Conv2d(w // 2, w, 4, stride=2, padding=1), nn.ReLU(),  # S/4
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
        )
        self.features = nn.Sequential(
            nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        )
        self.keypoints = nn.Conv2d(w, k, 1)
        self.head = nn.Sequential(nn.Linear(w * (f // 4) ** 2 + 6 * k, rcfg.hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(rcfg.hidden, 8))
        nn.init.zeros_(self.head[-1].weight)  # starts at the identity about the centre, as T^Z does
        with torch.no_grad():
            self.head[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0]))
        self.rigid = cfg.tz_rigid
        self.register_buffer("base", base_grid(f), persistent=False)

    def keypoint_positions(self, h):
        """(B, W, F, F) -> (B, K, 2): (x, y) in [-1, 1] expected under each map's spatial softmax."""
        attention = torch.softmax(self.keypoints(h).flatten(2), dim=-1)  # (B, K, F*F)
        return torch.matmul(attention, self.base.flatten(0, 1)[:, :2])

    def forward(self, x_t1, x_t2):
        # one encoder call on both frames; unflatten, not chunk(2), which exports with a fixed batch
        h1, h2 = self.encode(torch.cat([x_t1, x_t2])).unflatten(0, (2, -1))  # (B, W, F, F) each
        k1, k2 = self.keypoint_positions(torch.cat([h1, h2])).unflatten(0, (2, -1))  # (B, K, 2) each
        out = self.head(torch.cat([self.features(torch.cat([h1, h2], dim=1)), k1.flatten(1),
                                   k2.flatten(1), (k2 - k1).flatten(1)], dim=1))
        theta, origin = out[:, :6].view(-1, 2, 3), out[:, 6:]
        return (Transform.nearest_rigid(theta) if self.rigid else theta), origin


def displacement(theta: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between where two affines send the points of [-1, 1]^2, uniformly
    spread: ||db||^2 + ||dA||_F^2 / 3, (B, 2, 3) x2 -> (B,)."""
    d = theta - target
    return d[:, :, 2].square().sum(1) + d[:, :, :2].square().sum((1, 2)) / 3
