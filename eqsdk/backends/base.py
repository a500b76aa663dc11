"""What every backend provides: run one graph of a bundle; move tensors in and out.

Tensors between graphs are the backend's own (numpy arrays on the CPU, device buffers on a GPU),
so a chain of graphs never leaves the device. The renderer only ever splits, joins or repeats
them along the batch, through the methods here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqsdk.errors import BundleError
from eqsdk.graphs import GRAPHS, resolve
from eqsdk.manifest import Manifest


class Backend:
    name = "?"
    precision = "fp32"
    # Whole paths (eqsdk.graphs.PATHS) this backend runs as one call, composed from the bundle's
    # graphs when it loads; the renderer chains the graphs for every other path.
    paths: frozenset[str] = frozenset()

    def __init__(self, directory: Path, manifest: Manifest):
        self.directory, self.manifest = Path(directory), manifest

    def graph_path(self, graph: str) -> Path:
        return self.directory / self.manifest.graphs[graph].file

    def run(self, graph: str, **inputs):
        """Run one graph on keyword inputs named as in eqsdk.graphs.GRAPHS -> {output: tensor}."""
        raise NotImplementedError

    def run_path(self, path: str, **inputs):
        """Run one of `paths` on keyword inputs named as in eqsdk.graphs.PATHS -> its image."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line: the runtime, device and precision actually in use."""
        raise NotImplementedError

    # Tensors. The defaults are for host numpy arrays; device backends override them.
    def upload(self, a: np.ndarray):
        return np.ascontiguousarray(a, dtype=np.float32)

    def download(self, t) -> np.ndarray:
        return t

    def split(self, t, parts: int) -> list:
        return np.split(t, parts)

    def concat(self, tensors: list):
        return tensors[0] if len(tensors) == 1 else np.concatenate(tensors)

    def repeat(self, t, n: int):
        return t if n == 1 else np.repeat(t, n, axis=0)

    def rows(self, t, start: int, stop: int):
        """Items start:stop along the batch, as a view."""
        return t.rows(start, stop) if isinstance(t, DeviceArray) else t[start:stop]

    def batch_size(self, t) -> int:
        return len(t)


@dataclass(frozen=True)
class DeviceArray:
    """A float32 C-contiguous tensor in GPU memory: `shape` at device address `ptr`. `owner` holds
    the memory (an OrtValue, a cudaMalloc allocation); views share it, which keeps it alive."""
    ptr: int
    shape: tuple[int, ...]
    owner: object

    @property
    def nbytes(self) -> int:
        return 4 * math.prod(self.shape)

    def aligned(self, to: int) -> bool:
        """Whether the address is a multiple of `to` bytes, as a runtime may require of its inputs.
        Allocations are aligned; a view is when an item's size is a multiple of `to` (images and
        features are, theta's 24 bytes are not)."""
        return self.ptr % to == 0

    def rows(self, start: int, stop: int) -> DeviceArray:
        """Items start:stop along the batch, as a view: contiguous, so an address offset."""
        row = 4 * math.prod(self.shape[1:])
        return DeviceArray(self.ptr + start * row, (stop - start, *self.shape[1:]), self.owner)

    def split(self, parts: int) -> list[DeviceArray]:
        n = self.shape[0]
        if n % parts:
            raise ValueError(f"cannot split a batch of {n} into {parts} equal parts")
        step = n // parts
        return [self.rows(k * step, (k + 1) * step) for k in range(parts)]


def check_interface(path: Path, graph: str, inputs: dict, outputs: dict, config: dict) -> None:
    """A graph's inputs and outputs (name -> shape, symbolic dims as str or None) must be those
    of eqsdk.graphs.GRAPHS with the bundle's sizes; a mismatch names the file."""
    spec = GRAPHS[graph]
    for kind, got, want in (("inputs", inputs, spec.inputs), ("outputs", outputs, spec.outputs)):
        if list(got) != list(want):
            raise BundleError(f"{path}: graph {kind} {list(got)}, expected {list(want)} for {graph!r}")
        for name, shape in got.items():
            expected = resolve(want[name], config)
            fixed = [(g, e) for g, e in zip(shape, expected) if isinstance(e, int)]
            if len(shape) != len(expected) or any(g != e for g, e in fixed):
                raise BundleError(f"{path}: {name!r} has shape {list(shape)}, expected "
                                  f"{list(expected)} from the manifest's config")
