"""A bundle's manifest.json, parsed into typed objects: the one place that knows its fields.

Export writes it (Manifest.to_json); the loader, `eqsdk info` and `eqsdk verify` read it
(read_manifest). Anything malformed is a BundleError naming the file and the key. Bundles are
re-exported with export.to_onnx, never edited by hand: a field change bumps SCHEMA_VERSION.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from eqsdk.errors import BundleError
from eqsdk.graphs import GRAPHS, REQUIRED, resolve

MANIFEST = "manifest.json"
SCHEMA_VERSION = 3  # 3: golden render, recipe; T^Z's motion check is a runtime option only
MAX_MANIFEST_BYTES = 4 << 20  # shipped manifests are ~50 kB; refuse to parse a huge file
EXPORT_HINT = "re-export it with: python -m export.to_onnx CHECKPOINT --out DIR"


@dataclass(frozen=True)
class GraphEntry:
    """One graph file of the bundle and the interface it was exported with."""
    name: str
    file: str  # relative to the bundle directory
    sha256: str
    doc: str
    inputs: Mapping[str, tuple]  # name -> shape, "B" the dynamic batch
    outputs: Mapping[str, tuple]


@dataclass(frozen=True)
class Golden:
    """Fixed inputs and the renders export measured on them (eqsdk.verify.golden_renders): a
    graph swapped for another model's, even with its sha256 updated, renders differently."""
    seed: int  # of the inputs, eqsdk.verify.golden_inputs
    batch: int  # scenes rendered
    pool: int  # each render is kept as a thumbnail: the mean of pool x pool pixel blocks
    tolerance: float  # max abs difference allowed on the thumbnails
    renders: Mapping[str, tuple]  # path ("render", "compose") -> thumbnails, nested tuples


@dataclass(frozen=True)
class Training:
    """A training stage: how the weights were made, and the stage they started from."""
    command: str | None
    recipe: str | None  # the recipe file that replays the model, e.g. recipes/mnist.toml
    stage: int | None  # which of the recipe's stages (from 1)
    step: int
    samples: int
    minutes: float
    path: str | None  # the checkpoint of an earlier stage
    train_config: Mapping
    init_from: Training | None

    def stages(self) -> list[Training]:
        """This stage and every earlier one, latest first."""
        out, stage = [], self
        while stage is not None:
            out, stage = out + [stage], stage.init_from
        return out


@dataclass(frozen=True)
class Manifest:
    name: str
    opset: int
    config: Mapping[str, object]  # the model's architecture: image_size, channels, ...
    graphs: Mapping[str, GraphEntry]  # names of eqsdk.graphs.GRAPHS, in that order: the required
    # ones and the optional ones the bundle has
    golden: Golden | None  # None for derived bundles (e.g. quantised) that record none
    training: Training | None
    evaluation: Mapping  # the evaluator's record, as written by train.evaluate*
    parity: Mapping[str, float]  # max abs difference ONNX Runtime vs PyTorch at export
    precision: str | Mapping  # "fp32", or a quantised bundle's {"int8": [graphs], ...}
    schema_version: int = SCHEMA_VERSION

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    def to_json(self) -> dict:
        """The JSON object that read_manifest parses back to this manifest."""
        return plain({
            "schema_version": self.schema_version, "name": self.name, "opset": self.opset,
            "config": self.config,
            "graphs": {g: {"file": e.file, "sha256": e.sha256, "doc": e.doc, "inputs": e.inputs,
                           "outputs": e.outputs} for g, e in self.graphs.items()},
            "golden": None if self.golden is None else {
                "seed": self.golden.seed, "batch": self.golden.batch, "pool": self.golden.pool,
                "tolerance": self.golden.tolerance, "renders": self.golden.renders},
            "training": None if self.training is None else training_json(self.training),
            "evaluation": self.evaluation, "parity_max_abs_diff": self.parity,
            "precision": self.precision})

    def write(self, directory: Path) -> None:
        (Path(directory) / MANIFEST).write_text(json.dumps(self.to_json(), indent=2) + "\n")


def training_json(t: Training) -> dict:
    out = {"command": t.command, "recipe": t.recipe, "stage": t.stage, "step": t.step, "samples": t.samples,
           "minutes": t.minutes, "path": t.path, "train_config": t.train_config,
           "init_from": None if t.init_from is None else training_json(t.init_from)}
    return {k: v for k, v in out.items() if v is not None and v != {}}


def plain(x):
    """Read-only mappings and tuples back to JSON's dicts and lists."""
    if isinstance(x, Mapping):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def frozen(x):
    """JSON data as read-only mappings and tuples, so a parsed manifest cannot change."""
    if isinstance(x, dict):
        return MappingProxyType({k: frozen(v) for k, v in x.items()})
    if isinstance(x, list):
        return tuple(frozen(v) for v in x)
    return x


class Fields:
    """Typed reads of one JSON object of the manifest; errors name the file and the key."""

    def __init__(self, path: Path, obj, where: str = ""):
        self.path, self.where = path, where
        if not isinstance(obj, dict):
            raise self.error(f"{json_type(obj)}; expected an object")
        self.obj = obj

    def error(self, message: str, key: str | None = None) -> BundleError:
        at = ".".join(p for p in (self.where, key) if p)
        return BundleError(f"{self.path}: {'key ' + repr(at) + ': ' if at else ''}{message}")

    def only(self, *keys: str) -> None:
        unknown = sorted(set(self.obj) - set(keys))
        if unknown:
            raise self.error(f"unknown key {unknown[0]!r}; expected keys among {', '.join(keys)} "
                             f"({EXPORT_HINT})")

    def get(self, key: str, kind, optional: bool = False, default=None):
        if key not in self.obj or (optional and self.obj[key] is None):
            if optional:
                return default
            raise self.error("missing", key)
        value = self.obj[key]
        if not is_kind(value, kind):
            raise self.error(f"{json_type(value)} {short(value)}; expected {kind_name(kind)}", key)
        return value

    def sub(self, key: str, optional: bool = False) -> Fields | None:
        value = self.get(key, dict, optional)
        return None if value is None else Fields(self.path, value, ".".join(p for p in (self.where, key) if p))


def is_kind(value, kind) -> bool:
    if kind is int:  # JSON true is not a number of steps
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    return isinstance(value, kind)


def kind_name(kind) -> str:
    return {int: "an integer", float: "a finite number", str: "a string", dict: "an object",
            list: "a list", bool: "true or false"}.get(kind, "a string or an object")


def json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_shape(f: Fields, key: str) -> tuple:
    shape = f.get(key, list)
    if not all(d == "B" or is_kind(d, int) for d in shape):
        raise f.error(f"{short(shape)}; expected a shape of integers and 'B'", key)
    return tuple(shape)


def parse_graph(directory: Path, name: str, f: Fields, config: Mapping) -> GraphEntry:
    f.only("file", "sha256", "doc", "inputs", "outputs")
    file = f.get("file", str)
    pure = PurePosixPath(file)
    if not file or pure.is_absolute() or "\\" in file or ".." in pure.parts or ":" in file:
        raise f.error(f"{file!r}; expected a file name inside the bundle directory", "file")
    target = (directory / file).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise f.error(f"{file!r} leads out of the bundle directory (to {target}); expected a file "
                      "inside it", "file")
    sha = f.get("sha256", str)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise f.error(f"{short(sha)}; expected 64 lowercase hex digits", "sha256")
    shapes = {}
    for kind in ("inputs", "outputs"):
        sub = f.sub(kind)
        want = {k: resolve(v, config) for k, v in getattr(GRAPHS[name], kind).items()}
        got = {k: parse_shape(sub, k) for k in sub.obj}
        if got != want:
            raise f.error(f"{short(plain(got))}; expected {short(plain(want))} for the graph "
                          f"{name!r} of this config", kind)
        shapes[kind] = MappingProxyType(got)
    return GraphEntry(name, file, sha, f.get("doc", str, optional=True, default=""), **shapes)


def parse_golden(f: Fields | None, config: Mapping) -> Golden | None:
    if f is None:
        return None
    f.only("seed", "batch", "pool", "tolerance", "renders")
    seed, batch, pool = f.get("seed", int), f.get("batch", int), f.get("pool", int)
    tolerance = f.get("tolerance", float)
    s = config["image_size"]
    if batch < 1 or pool < 1 or s % pool or not 0 < tolerance < 1:
        raise f.error(f"batch {batch}, pool {pool}, tolerance {tolerance}; expected batch >= 1, "
                      f"pool dividing {s}, 0 < tolerance < 1")
    renders, want = f.sub("renders"), (batch, 3, s // pool, s // pool)
    out = {}
    for key in renders.obj:
        value = renders.get(key, list)
        got = nested_shape(value)
        if got != want:
            raise renders.error(f"thumbnails of shape {got}; expected {want} of numbers", key)
        out[key] = frozen(value)
    if not out:
        raise f.error("no renders; expected at least one", "renders")
    return Golden(seed, batch, pool, tolerance, MappingProxyType(out))


def nested_shape(value) -> tuple | None:
    """The shape of a nested list of finite numbers with equal lengths at each depth, else None."""
    if not isinstance(value, list):
        return () if is_kind(value, float) else None
    shapes = {nested_shape(v) for v in value}
    if len(shapes) != 1 or None in shapes:
        return None if value else (0,)
    return (len(value), *shapes.pop())


def parse_training(f: Fields | None) -> Training | None:
    if f is None:
        return None
    f.only("command", "recipe", "stage", "step", "samples", "minutes", "path", "train_config", "init_from")
    return Training(
        command=f.get("command", str, optional=True), recipe=f.get("recipe", str, optional=True),
        stage=f.get("stage", int, optional=True),
        step=f.get("step", int), samples=f.get("samples", int), minutes=f.get("minutes", float),
        path=f.get("path", str, optional=True),
        train_config=frozen(f.get("train_config", dict, optional=True, default={})),
        init_from=parse_training(f.sub("init_from", optional=True)))


def training_record(data: dict, source: Path) -> Training | None:
    """The Training of a JSON-like record (export: from a checkpoint at `source`)."""
    data = {k: v for k, v in plain(data or {}).items() if v is not None}
    return parse_training(Fields(Path(source), data, "training") if data else None)


def parse_manifest(path: Path, data) -> Manifest:
    """The Manifest of the JSON `data` read from `path` (a bundle's manifest.json)."""
    top = Fields(path, data)
    version = top.get("schema_version", int)
    if version < SCHEMA_VERSION:
        raise top.error(f"{version}: a bundle of an older eqsdk (this one reads "
                        f"{SCHEMA_VERSION}); {EXPORT_HINT}", "schema_version")
    if version > SCHEMA_VERSION:
        raise top.error(f"{version}: a bundle of a newer eqsdk (this one reads "
                        f"{SCHEMA_VERSION}); upgrade eqsdk", "schema_version")
    top.only("schema_version", "name", "opset", "config", "graphs", "golden", "training",
             "evaluation", "parity_max_abs_diff", "precision")
    cfg = top.sub("config")
    for key in ("image_size", "channels"):
        if cfg.get(key, int) < 1:
            raise cfg.error(f"{cfg.obj[key]}; expected a positive integer", key)
    if cfg.obj["image_size"] % 4:  # the features are S / 4 on a side
        raise cfg.error(f"{cfg.obj['image_size']}; expected a multiple of 4", "image_size")
    for key, value in cfg.obj.items():
        if not isinstance(value, (int, float, bool, str)):
            raise cfg.error(f"{json_type(value)}; expected a number, string or boolean", key)
    config = MappingProxyType(dict(cfg.obj))
    graphs_f = top.sub("graphs")
    missing = [g for g in REQUIRED if g not in graphs_f.obj]
    if missing:
        raise graphs_f.error("missing", missing[0])
    graphs_f.only(*GRAPHS)
    directory = path.parent
    graphs = {g: parse_graph(directory, g, graphs_f.sub(g), config) for g in GRAPHS if g in graphs_f.obj}
    parity = top.get("parity_max_abs_diff", dict, optional=True, default={})
    for key, value in parity.items():
        if not is_kind(value, float):
            raise top.error(f"{json_type(value)}; expected a finite number", f"parity_max_abs_diff.{key}")
    precision = top.get("precision", (str, dict), optional=True, default="fp32")
    if isinstance(precision, dict):
        int8 = Fields(path, precision, "precision").get("int8", list)
        if not set(int8) <= set(GRAPHS) or not all(isinstance(g, str) for g in int8):
            raise top.error(f"{short(int8)}; expected names of graphs", "precision.int8")
    return Manifest(
        name=top.get("name", str), opset=top.get("opset", int), config=config,
        graphs=MappingProxyType(graphs), golden=parse_golden(top.sub("golden", optional=True), config),
        training=parse_training(top.sub("training", optional=True)),
        evaluation=frozen(top.get("evaluation", dict, optional=True, default={})),
        parity=MappingProxyType(dict(parity)), precision=frozen(precision), schema_version=version)


def read_manifest(directory: Path) -> Manifest:
    """The manifest of the bundle in `directory`, after checking every graph file: inside the
    directory, a regular readable file, with the sha256 the manifest records."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.exists():
        raise BundleError(f"{path}: missing; a bundle directory holds {MANIFEST} and "
                          f"{', '.join(GRAPHS[g].file for g in REQUIRED)}")
    if not path.is_file():
        raise BundleError(f"{path}: not a file; expected the bundle's JSON manifest")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path}: {path.stat().st_size:,} bytes; expected a manifest of at "
                              f"most {MAX_MANIFEST_BYTES:,}")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise BundleError(f"{path}: not a readable JSON manifest ({reason})") from None
    manifest = parse_manifest(path, data)
    for entry in manifest.graphs.values():
        check_graph_file(directory / entry.file, entry)
    return manifest


def check_graph_file(graph: Path, entry: GraphEntry) -> None:
    if not graph.exists():
        raise BundleError(f"{graph}: missing graph file of {entry.name!r}")
    if not graph.is_file():
        raise BundleError(f"{graph}: not a file; expected the ONNX graph {entry.name!r}")
    try:
        digest = hashlib.sha256(graph.read_bytes()).hexdigest()
    except OSError as e:
        raise BundleError(f"{graph}: unreadable graph file of {entry.name!r} ({e.strerror})") from None
    if digest != entry.sha256:
        raise BundleError(f"{graph}: sha256 {digest[:12]}… does not match the manifest's "
                          f"{entry.sha256[:12]}…: the file is truncated or modified")
