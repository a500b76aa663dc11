"""T^Z's reading of a motion, checked by the renderer (analysis by synthesis).

T^Z under-reads a character that is already turned far from upright (docs/design.md):
every training video starts upright, so a 54° turn can read as 17°. The model's own renderer
knows better. Re-render the start frame x_t1 moved by T^Z's theta turned further about the
character, by every STEP degrees up to +-SCAN. Keep the turn whose render g(theta' o f_c(x_t1) +
f_b(x_t1)) matches the end frame x_t2 best, if it beats theta's own render clearly (MARGIN):
near-symmetric shapes render alike at many turns. It costs 2 * SCAN / STEP extra runs of g
and of the warp per motion.

Numpy here (the runtime); train.model.SceneModel.checked_theta is the same check in torch.
"""
from __future__ import annotations

import numpy as np

SCAN = 45.0  # degrees either way
STEP = 9.0  # degrees between the turns tried
MARGIN = 0.8  # a turn is kept only where it renders with this fraction of theta's loss or less


def turns(scan: float = SCAN, step: float = STEP) -> np.ndarray:
    """The extra turns tried, in degrees: +-step, +-2 step, ... up to +-scan."""
    up = np.arange(step, scan + 1e-6, step)
    return np.concatenate([up, -up])


def turn_about(centre: np.ndarray, degrees: float) -> np.ndarray:
    """(B, 2) -> (B, 2, 3) float32: the rotation by `degrees` about each centre, p -> R (p - c) + c."""
    a = np.radians(degrees)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shift = centre - centre @ r.T
    return np.concatenate([np.broadcast_to(r, (len(centre), 2, 2)), shift[:, :, None]], axis=2).astype(np.float32)


def compose(theta: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """theta o delta, (B, 2, 3) each: sampling by the result is sampling by delta, then by theta."""
    a = theta[:, :, :2]
    return np.concatenate([a @ delta[:, :, :2], a @ delta[:, :, 2:] + theta[:, :, 2:]], axis=2)


def centre(z: np.ndarray) -> np.ndarray:
    """Where the character is in features z (B, C, F, F): the centroid (x, y) in [-1, 1] of their
    energy about the spatial mean (train.model.Transform.centre)."""
    z = z.astype(np.float32)
    energy = np.square(z - z.mean(axis=(2, 3), keepdims=True)).sum(1).reshape(len(z), -1)
    weights = energy / (energy.sum(1, keepdims=True) + 1e-12)
    f = z.shape[-1]
    lin = (np.arange(f, dtype=np.float32) * 2 + 1) / f - 1
    y, x = np.meshgrid(lin, lin, indexing="ij")
    return weights @ np.stack([x.ravel(), y.ravel()], axis=1)


def candidates(theta: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """theta (B, 2, 3) and each turn of it about pivot (B, 2) -> (K, B, 2, 3), theta first."""
    return np.stack([theta] + [compose(theta, turn_about(pivot, d)) for d in turns()]).astype(np.float32)


def choose(losses: np.ndarray) -> np.ndarray:
    """(K, B) render losses of the candidates -> (B,) the index kept for each motion."""
    best = losses.argmin(0)
    return np.where(losses.min(0) < MARGIN * losses[0], best, 0)
