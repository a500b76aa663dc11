"""Composes the four graphs: render = g(T^Z(f_c(x_t1), f_c(x_t2)) o f_c(x_c) + f_b(x_b)) (§3)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from eqsdk.errors import InputError
from eqsdk.images import ImageLike, to_array, to_uint8


class Renderer:
    """Renders scenes with a loaded model. Takes its graphs (callables with keyword inputs named
    as in eqsdk.graphs.GRAPHS, returning dicts of arrays) and the bundle's manifest."""

    def __init__(self, graphs: Mapping, manifest: dict):
        self.graphs = dict(graphs)
        self.manifest = manifest
        self.name = manifest.get("name", "?")
        self.image_size = int(manifest["config"]["image_size"])

    def __repr__(self) -> str:
        return f"Renderer({self.name!r}, {self.image_size}x{self.image_size})"

    def render(self, char: ImageLike, bg: ImageLike, anim: Sequence[ImageLike]) -> np.ndarray:
        """The character of `char` on the background of `bg`, moved as the character moved from
        anim[0] to anim[1]. Images: paths, PIL images or HxWx3 uint8 arrays. Returns an
        (S, S, 3) uint8 array at the model's size."""
        if isinstance(anim, (str, bytes)) or len(anim) != 2:
            got = "a single image" if isinstance(anim, (str, bytes)) else f"{len(anim)} images"
            raise InputError(f"anim: expected 2 images (start, end of the motion), got {got}")
        s = self.image_size
        x = [to_array(src, s, name)[None] for src, name in
             ((char, "char"), (anim[0], "anim[0]"), (anim[1], "anim[1]"), (bg, "bg"))]
        return to_uint8(self.render_arrays(*x)[0])

    def render_arrays(self, x_c: np.ndarray, x_t1: np.ndarray, x_t2: np.ndarray,
                      x_b: np.ndarray) -> np.ndarray:
        """Batched h(x_c, x_t1, x_t2, x_b): float32 (B, 3, S, S) in [0, 1] each -> (B, 3, S, S)."""
        b = len(x_c)
        z = self.graphs["f_c"](x=np.concatenate([x_c, x_t1, x_t2]))["z"]  # one call, batch 3B
        z_c, z_t1, z_t2 = z[:b], z[b:2 * b], z[2 * b:]
        z_b = self.graphs["f_b"](x=x_b)["z"]
        z_moved = self.graphs["t_z"](z_t1=z_t1, z_t2=z_t2, z_c=z_c)["z_moved"]
        return self.graphs["g"](z_char=z_moved, z_bg=z_b)["image"]
