"""The four graphs of a model bundle, described once: export writes them, the runtime reads them.

Shapes use symbols resolved from the model config: B batch (dynamic), S image size,
C feature channels, F feature size (S / 4).
"""
from __future__ import annotations

from dataclasses import dataclass

IMAGE = ("B", 3, "S", "S")  # RGB in [0, 1]
FEATURES = ("B", "C", "F", "F")  # scene representation z
THETA = ("B", 2, 3)  # affine, output -> input coordinates as in grid_sample
POINT = ("B", 2)  # (x, y) in [-1, 1]: where a character is (the centre a motion acts about)


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: dict[str, tuple]
    outputs: dict[str, tuple]
    doc: str
    optional: bool = False  # a bundle may leave it out

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


GRAPHS = {
    spec.name: spec
    for spec in (
        GraphSpec("f_c", {"x": IMAGE}, {"z": FEATURES}, "character encoder"),
        GraphSpec("f_b", {"x": IMAGE}, {"z": FEATURES}, "background encoder"),
        GraphSpec("t_z", {"z_t1": FEATURES, "z_t2": FEATURES, "z_c": FEATURES},
                  {"theta": THETA, "origin": POINT, "z_moved": FEATURES},
                  "learned transform T^Z(z_t1, z_t2), applied to z_c about its own centre with "
                  "GridSample; origin: the centre of z_t1 that theta is relative to"),
        GraphSpec("g", {"z_char": FEATURES, "z_bg": FEATURES}, {"image": IMAGE},
                  "decoder of z_char + z_bg"),
        # Not one of the paper's four networks: T^Z's GridSample alone, so that a motion encoded
        # once (theta) moves any character without re-running T^Z.
        GraphSpec("warp", {"theta": THETA, "origin": POINT, "z_c": FEATURES}, {"z_moved": FEATURES},
                  "T^Z's transform-apply alone: theta (relative to origin) o z_c, with GridSample"),
        # Not one of the paper's networks either: a small network trained to give T^Z's theta and
        # origin from the frames themselves (train/distill.py), so driving frames skip f_c and T^Z.
        GraphSpec("reader", {"x_t1": IMAGE, "x_t2": IMAGE}, {"theta": THETA, "origin": POINT},
                  "motion reader: T^Z(f_c(x_t1), f_c(x_t2))'s theta and origin, read from the frames "
                  "by a network distilled from f_c and T^Z", optional=True),
    )
}
REQUIRED = tuple(name for name, spec in GRAPHS.items() if not spec.optional)


def resolve(shape: tuple, config: dict, batch: int | str = "B") -> tuple:
    """A symbolic shape with the model's sizes filled in; the batch stays symbolic unless given."""
    sizes = {"B": batch, "S": config["image_size"], "C": config["channels"],
             "F": config["image_size"] // 4}
    return tuple(sizes.get(d, d) if isinstance(d, str) else d for d in shape)


@dataclass(frozen=True)
class PathSpec:
    """A render path as one model: its inputs, and how the bundle's graphs are wired into it."""
    name: str
    inputs: dict[str, tuple]
    doc: str
    graphs: tuple[str, ...]  # the graphs it runs

    def runs_on(self, graphs) -> bool:
        """Whether a bundle with these graphs has every graph this path runs."""
        return set(self.graphs) <= set(graphs)


# The paths a backend may run in one call (Backend.paths). Each outputs "image" (IMAGE) and is
# one of the renderer's chains of graphs without the motion check, composed (see a backend's
# compose_path); the bundle keeps only the separate graphs.
PATHS = {
    spec.name: spec
    for spec in (
        PathSpec("render", {"x_c": IMAGE, "x_t1": IMAGE, "x_t2": IMAGE, "x_b": IMAGE},
                 "g(T^Z(z_t1, z_t2) o z_c + f_b(x_b)), f_c once on x_c, x_t1, x_t2 concatenated",
                 ("f_c", "f_b", "t_z", "g")),
        PathSpec("drive", {"z_c": FEATURES, "z_b": FEATURES, "z_t1": FEATURES, "x_t2": IMAGE},
                 "a new driving frame on a cached character, background and reference frame: "
                 "g(T^Z(z_t1, f_c(x_t2)) o z_c + z_b)", ("f_c", "t_z", "g")),
        PathSpec("drive_reader", {"z_c": FEATURES, "z_b": FEATURES, "x_t1": IMAGE, "x_t2": IMAGE},
                 "a driving frame on a cached character and background, its motion from the "
                 "reference frame x_t1 read by the reader: g(warp(reader(x_t1, x_t2), z_c) + z_b)",
                 ("reader", "warp", "g")),
    )
}
