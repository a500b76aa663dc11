"""A bundle as a Triton Inference Server model repository: one ONNX Runtime model per graph, and
an ensemble, `render`, for the full render h(x_c, x_t1, x_t2, x_b) (§3).

    REPO/f_c/config.pbtxt   REPO/f_c/1/model.onnx     one model per graph of the bundle
    ...                                               (f_c, f_b, t_z, g, warp[, reader]), dynamic batching
    REPO/render/config.pbtxt   REPO/render/1/         the ensemble (Triton wants the empty version)

The ensemble is Renderer.render_arrays with the motion check off (its default): f_c on x_c, x_t1
and x_t2 (three steps of one model, which Triton's dynamic batcher may group into one batch, as
the renderer concatenates them), f_b on x_b, t_z, then g. Its output `image` is g's, float32
(B, 3, S, S); clipping to [0, 1] and conversion to uint8 are the client's, as in Renderer.render.
The motion check (eqsdk.motion_check) computes on the host between graphs and has no place in it.
The `warp` and `g` models serve compose: a motion read once (t_z's theta, origin) moves any
character's features without T^Z.

Nothing here imports torch or tritonclient: the configs are written as protobuf text.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from eqsdk.bundle import bundle_dir, read_manifest
from eqsdk.errors import BundleError, InputError
from eqsdk.images import check_place, reason, temp_beside
from eqsdk.manifest import Manifest
from eqsdk.renderer import BATCH

MAX_BATCH_SIZE = BATCH  # the renderer's batch: memory stays flat, batching keeps its speed
QUEUE_DELAY_US = 100  # dynamic batching's wait for more requests: small next to a render
CONFIG = "config.pbtxt"
ENSEMBLE = "render"

# ONNX Runtime's tensor types -> Triton's DataType names (model_config.proto).
DATA_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16",
              "tensor(double)": "TYPE_FP64", "tensor(int8)": "TYPE_INT8",
              "tensor(uint8)": "TYPE_UINT8", "tensor(int32)": "TYPE_INT32",
              "tensor(int64)": "TYPE_INT64", "tensor(bool)": "TYPE_BOOL"}


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # TYPE_FP32, ...
    dims: tuple[int, ...]  # without the batch dimension


@dataclass(frozen=True)
class Step:
    """One ensemble step: a model, its inputs from ensemble tensors, its outputs to them."""
    model: str
    inputs: dict[str, str]  # model input -> ensemble tensor
    outputs: dict[str, str]  # model output -> ensemble tensor


# The ensemble: render_arrays's data flow, each name an ensemble tensor.
RENDER_INPUTS = ("x_c", "x_b", "x_t1", "x_t2")
RENDER_STEPS = (
    Step("f_c", {"x": "x_c"}, {"z": "z_c"}),
    Step("f_c", {"x": "x_t1"}, {"z": "z_t1"}),
    Step("f_c", {"x": "x_t2"}, {"z": "z_t2"}),
    Step("f_b", {"x": "x_b"}, {"z": "z_b"}),
    # theta and origin are not mapped: the ensemble's output is the image alone.
    Step("t_z", {"z_t1": "z_t1", "z_t2": "z_t2", "z_c": "z_c"}, {"z_moved": "z_moved"}),
    Step("g", {"z_char": "z_moved", "z_bg": "z_b"}, {"image": "image"}),
)
RENDER_OUTPUTS = ("image",)


@dataclass(frozen=True)
class Repository:
    """What export_triton wrote: the repository's path and its models' names."""
    path: Path
    models: tuple[str, ...]  # the graphs, then the ensemble
    max_batch_size: int


def graph_tensors(directory: Path, manifest: Manifest) -> dict[str, tuple[list[Tensor], list[Tensor]]]:
    """Each graph's inputs and outputs: names and dims from the manifest (checked against the
    ONNX file by open_session), data types from the ONNX file."""
    import onnxruntime as ort

    from eqsdk.backends.ort_cpu import open_session

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # read, not run
    opts.log_severity_level = 3
    out = {}
    for name, entry in manifest.graphs.items():
        path = directory / entry.file
        session = open_session(path, name, manifest.config, opts, ["CPUExecutionProvider"])
        types = {v.name: v.type for v in (*session.get_inputs(), *session.get_outputs())}
        sides = []
        for shapes in (entry.inputs, entry.outputs):
            tensors = []
            for tensor, shape in shapes.items():
                if types[tensor] not in DATA_TYPES:
                    raise BundleError(f"{path}: {tensor!r} is a {types[tensor]}; expected one of "
                                      f"{', '.join(DATA_TYPES)}")
                tensors.append(Tensor(tensor, DATA_TYPES[types[tensor]], tuple(shape[1:])))
            sides.append(tensors)
        out[name] = tuple(sides)
    return out


def tensor_text(kind: str, tensors: list[Tensor]) -> str:
    items = ",\n".join(f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n'
                       f'    dims: [ {", ".join(map(str, t.dims))} ]\n  }}' for t in tensors)
    return f"{kind} [\n{items}\n]\n"


def model_config(name: str, inputs: list[Tensor], outputs: list[Tensor], max_batch_size: int) -> str:
    """config.pbtxt of one graph, served by Triton's onnxruntime backend."""
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
            + tensor_text("input", inputs) + tensor_text("output", outputs)
            + f"dynamic_batching {{\n  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}\n")


def ensemble_config(tensors: dict[str, tuple[list[Tensor], list[Tensor]]], max_batch_size: int) -> str:
    """config.pbtxt of the `render` ensemble: its inputs and output take their types and dims
    from the graph tensors they are mapped to."""
    def find(ensemble_name: str, side: int, key: str) -> Tensor:
        for step in RENDER_STEPS:
            for model_name, mapped in getattr(step, key).items():
                if mapped == ensemble_name:
                    t = next(t for t in tensors[step.model][side] if t.name == model_name)
                    return Tensor(ensemble_name, t.data_type, t.dims)
        raise AssertionError(f"{ensemble_name} is mapped by no step")  # RENDER_STEPS is ours

    def mapping(kind: str, pairs: dict[str, str]) -> str:
        return "".join(f'      {kind} {{\n        key: "{k}"\n        value: "{v}"\n      }}\n'
                       for k, v in pairs.items())

    steps = ",\n".join(f'    {{\n      model_name: "{s.model}"\n      model_version: -1\n'
                       + mapping("input_map", s.inputs) + mapping("output_map", s.outputs) + "    }"
                       for s in RENDER_STEPS)
    return (f'name: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: {max_batch_size}\n'
            + tensor_text("input", [find(n, 0, "inputs") for n in RENDER_INPUTS])
            + tensor_text("output", [find(n, 1, "outputs") for n in RENDER_OUTPUTS])
            + f"ensemble_scheduling {{\n  step [\n{steps}\n  ]\n}}\n")


def check_out_dir(out: Path, force: bool) -> None:
    """`out` may be written: missing, an empty folder, or with force a model repository (every
    entry a folder with a config.pbtxt), never another folder."""
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise InputError(f"output folder {str(out)!r} exists and is not a folder (a file or a "
                             "link); expected a new or empty folder for the model repository")
        entries = list(out.iterdir())
        if entries and not force:
            raise InputError(f"output folder {str(out)!r} exists and is not empty; pass --force "
                             "(force=True) to replace a model repository")
        if entries and not all((e / CONFIG).is_file() for e in entries):
            raise InputError(f"output folder {str(out)!r} holds files other than a model repository's "
                             f"(folders with a {CONFIG}); not replacing it, even with --force")
    check_place(out, directory=True)


def check_batch_size(max_batch_size) -> int:
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise InputError(f"max_batch_size: got {max_batch_size!r}; expected a positive integer")
    return max_batch_size


def export_triton(bundle: str | Path, out_dir: str | Path, max_batch_size: int = MAX_BATCH_SIZE,
                  force: bool = False) -> Repository:
    """Write the Triton model repository of `bundle` (a bundled model's name or a bundle
    directory) to `out_dir`: each graph's model.onnx (copied) and config.pbtxt, and the `render`
    ensemble. Written into a temporary folder beside `out_dir`, then renamed onto it: a failure
    leaves nothing half-written. An existing non-empty `out_dir` is replaced only with force,
    and only if it is a model repository."""
    max_batch_size = check_batch_size(max_batch_size)
    directory = bundle_dir(bundle)
    manifest = read_manifest(directory)  # every graph file checked against its sha256
    out = Path(out_dir)
    check_out_dir(out, force)
    tensors = graph_tensors(directory, manifest)
    tmp = temp_beside(out, directory=True)
    try:
        for name in manifest.graphs:
            (tmp / name / "1").mkdir(parents=True)
            shutil.copyfile(directory / manifest.graphs[name].file, tmp / name / "1" / "model.onnx")
            (tmp / name / CONFIG).write_text(model_config(name, *tensors[name], max_batch_size))
        (tmp / ENSEMBLE / "1").mkdir(parents=True)
        (tmp / ENSEMBLE / CONFIG).write_text(ensemble_config(tensors, max_batch_size))
        replace_folder(tmp, out)
    except OSError as e:  # a full disk, a place that changed since it was checked
        raise InputError(f"output folder {str(out)!r}: cannot write ({e.strerror or reason(e)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Repository(out, (*manifest.graphs, ENSEMBLE), max_batch_size)


def replace_folder(new: Path, out: Path) -> None:
    """Rename `new` onto `out`; an existing `out` (checked by check_out_dir) is moved aside
    first and removed once `new` is in place."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(new, out)  # rename(2) replaces an empty folder
        return
    old = temp_beside(out, directory=True)
    os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def triton_command(bundle: str | Path, out: str | Path, max_batch_size: int = MAX_BATCH_SIZE,
                   force: bool = False) -> list[str]:
    """`eqsdk export-triton BUNDLE --out REPO`: exports and returns the lines to print."""
    repo = export_triton(bundle, out, max_batch_size, force)
    models = ", ".join(m for m in repo.models if m != ENSEMBLE)
    return [f"wrote the Triton model repository {repo.path}",
            f"  models {models} (onnxruntime_onnx, dynamic batching, max_batch_size "
            f"{repo.max_batch_size})",
            f"  ensemble {ENSEMBLE}: x_c, x_b, x_t1, x_t2 -> image (float32, clip to [0, 1])",
            f"  serve: tritonserver --model-repository {repo.path.resolve()}"]
