"""The PyTorch reference for a bundle: the SceneModel rebuilt from the bundle's own graphs, and
the same calls eqsdk.bench times, in PyTorch (eager or torch.compile).

The weights come from the ONNX initializers, whose names are the modules' state_dict keys
(f_c.onnx holds 'stem.0.weight', ...). The exporter decomposes each GroupNorm of T^Z into
Reshape -> InstanceNormalization -> Reshape -> Mul(weight) -> Add(bias), so its affine parameters
are unnamed constants ('val_25', ...): they are read from the graph by following that chain from
each InstanceNormalization, in order. A conv whose bias was all zeros has no bias input (the
exporter drops it): that bias is zero. Every state_dict entry must be accounted for.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from eqsdk.bundle import read_manifest
from train.model import ModelConfig, SceneModel

MODULES = ("f_c", "f_b", "t_z", "g")  # graphs with weights of their own; warp has none


def consumers(graph: onnx.GraphProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in graph.node if tensor in n.input]


def group_norm_params(graph: onnx.GraphProto, consts: dict) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(weight (C,), bias (C,), groups) of each GroupNorm decomposed by the exporter, in graph
    order: Reshape(B, G, -1) -> InstanceNormalization -> Reshape back -> Mul(w) -> Add(b)."""
    found = []
    for node in graph.node:
        if node.op_type != "InstanceNormalization":
            continue
        groups = int(consts[next(n for n in graph.node if node.input[0] in n.output).input[1]][1])
        if np.any(consts[node.input[1]] != 1) or np.any(consts[node.input[2]] != 0):
            raise ValueError("InstanceNormalization with its own scale/bias: not a decomposed GroupNorm")
        (back,) = consumers(graph, node.output[0])
        (mul,) = consumers(graph, back.output[0])
        (add,) = consumers(graph, mul.output[0])
        if (back.op_type, mul.op_type, add.op_type) != ("Reshape", "Mul", "Add"):
            raise ValueError(f"unexpected GroupNorm decomposition after {node.name}")
        weight = next(consts[i] for i in mul.input if i in consts)
        bias = next(consts[i] for i in add.input if i in consts)
        found.append((weight.reshape(-1), bias.reshape(-1), groups))
    return found


def model_from_bundle(directory: Path) -> tuple[SceneModel, dict]:
    """The bundle's SceneModel in eval mode, and how its parameters were found:
    {"from_initializers": n, "from_graph": [GroupNorm keys], "zero_bias": [keys], "config": {...}}."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    model = SceneModel(ModelConfig(**manifest["config"])).eval()
    state, from_graph, zero_bias = {}, [], []
    for name in MODULES:
        graph = onnx.load(directory / manifest["graphs"][name]["file"]).graph
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        module = getattr(model, name)
        keys = module.state_dict()
        state.update({f"{name}.{k}": torch.from_numpy(v.copy()) for k, v in consts.items() if k in keys})
        for node in graph.node:  # the exporter drops an all-zero bias: the conv has no bias input
            weight = node.input[1] if len(node.input) == 2 else ""
            bias = weight.removesuffix("weight") + "bias"
            if node.op_type in ("Conv", "ConvTranspose") and weight.endswith(".weight") and bias in keys:
                state[f"{name}.{bias}"] = torch.zeros_like(keys[bias])
                zero_bias.append(f"{name}.{bias}")
        norms = [(k, m) for k, m in module.named_modules() if isinstance(m, torch.nn.GroupNorm)]
        params = group_norm_params(graph, consts)
        # a network that runs more than once in its graph (a symmetric T^Z reads both ways)
        # repeats its GroupNorms: every pass must carry the first pass's parameters
        first, passes = params[:len(norms)], len(params) // len(norms) if norms else 0
        if len(params) != passes * len(norms) or any(
                not all(np.array_equal(a, b) for a, b in zip(p, q)) for p, q in zip(params, first * passes)):
            raise ValueError(f"{name}: {len(params)} GroupNorms in the graph, {len(norms)} in the model")
        for (key, norm), (weight, bias, groups) in zip(norms, first):
            if groups != norm.num_groups or weight.shape != norm.weight.shape:
                raise ValueError(f"{name}.{key}: graph has {groups} groups of {weight.shape}, model "
                                 f"{norm.num_groups} groups of {tuple(norm.weight.shape)}")
            for p, value in (("weight", weight), ("bias", bias)):
                state[f"{name}.{key}.{p}"] = torch.from_numpy(value.copy())
                from_graph.append(f"{name}.{key}.{p}")
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"parameters not found in the bundle's graphs: {sorted(missing)}")
    model.load_state_dict(state)
    return model, {"from_initializers": len(state) - len(from_graph) - len(zero_bias),
                   "from_graph": from_graph, "zero_bias": zero_bias, "config": manifest["config"]}


def parity(model: SceneModel, renderer, batch: int = 4, seed: int = 0) -> float:
    """Max abs difference of a full render, PyTorch vs the eqsdk renderer, same inputs."""
    s = renderer.image_size
    rng = np.random.default_rng(seed)
    x = rng.random((4, batch, 3, s, s), dtype=np.float32)
    with torch.inference_mode():
        ref = model(*(torch.from_numpy(a) for a in x)).numpy()
    return float(np.abs(ref - renderer.render_arrays(*x)).max())


class Graphs:
    """The modules behind the five graphs, eager or compiled, called with the graphs' inputs."""

    def __init__(self, model: SceneModel, compile: bool = False):
        t_z = model.t_z
        modules = {"f_c": model.f_c, "f_b": model.f_b, "t_z": t_z, "g": model.g,
                   "warp": lambda theta, origin, z_c: t_z.apply(t_z.recentre(theta, origin, t_z.centre(z_c)), z_c)}
        # dynamic=False: one specialised kernel set per batch size, as a latency-minded user would.
        self.run = {k: torch.compile(m, dynamic=False) if compile else m for k, m in modules.items()}


def paths(graphs: Graphs, cfg: dict, batch: int, seed: int = 0) -> dict:
    """The calls eqsdk.bench.paths times, in PyTorch: the four paths (each as the renderer
    composes it) and each graph alone, inputs prepared; each returns a tensor."""
    run, s, c, f = graphs.run, cfg["image_size"], cfg["channels"], cfg["image_size"] // 4
    gen = torch.Generator().manual_seed(seed)
    x_c, x_t1, x_t2, x_b = torch.rand(4, batch, 3, s, s, generator=gen)
    # Cached character, background and motion, made with the calls the paths use (so that a
    # compiled module meets no extra input shapes).
    z_c, z_t1, z_t2 = run["f_c"](torch.cat([x_c, x_t1, x_t2])).chunk(3)
    z_b, (theta, origin, _) = run["f_b"](x_b), run["t_z"](z_t1, z_t2, z_c)

    def full():
        z_c, z_t1, z_t2 = run["f_c"](torch.cat([x_c, x_t1, x_t2])).chunk(3)
        return run["g"](run["t_z"](z_t1, z_t2, z_c)[-1], run["f_b"](x_b))

    def motion():
        z_t1, z_t2 = run["f_c"](torch.cat([x_t1, x_t2])).chunk(2)
        return run["g"](run["t_z"](z_t1, z_t2, z_c)[-1], z_b)

    z_ref = run["f_c"](x_t1[:1]).expand(batch, -1, -1, -1)  # the cached reference frame

    def drive():
        return run["g"](run["t_z"](z_ref, run["f_c"](x_t2), z_c)[-1], z_b)

    def background():
        return run["g"](run["warp"](theta, origin, z_c), run["f_b"](x_b))

    def features(n):
        return torch.randn(n, c, f, f, generator=gen)

    x3 = torch.rand(3 * batch, 3, s, s, generator=gen)
    z1, z2, z3 = features(batch), features(batch), features(batch)
    return {"full": full, "motion": motion, "drive": drive, "background": background,
            "graph:f_c": lambda: run["f_c"](x3), "graph:f_b": lambda: run["f_b"](x_b),
            "graph:t_z": lambda: run["t_z"](z1, z2, z3), "graph:g": lambda: run["g"](z1, z2),
            "graph:warp": lambda: run["warp"](theta, origin, z1)}


def bench(model: SceneModel, batches, runs: int, warmup: int, threads: int,
          compile: bool = False, budget_s: float | None = None) -> dict:
    """Same statistics as eqsdk.bench.bench, for PyTorch on `threads` threads under
    inference_mode. With compile, the first call of each path at each batch (which compiles) is
    timed separately as compile_s."""
    from eqsdk.bench import time_calls

    torch.set_num_threads(threads)
    graphs = Graphs(model, compile)
    results, compile_s = {}, {}
    with torch.inference_mode():
        for batch in batches:
            row = {}
            t0 = time.perf_counter()
            calls = paths(graphs, model.cfg.to_dict(), batch)  # compiles f_c, f_b, t_z if compiling
            setup = time.perf_counter() - t0
            for name, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                compile_s[f"{batch}/{name}"] = time.perf_counter() - t0
                row[name] = time_calls(fn, runs, warmup, budget_s)
                if not name.startswith("graph:"):
                    row[name]["renders_per_s"] = batch / (row[name]["median_ms"] / 1e3)
            compile_s[f"{batch}/inputs"] = setup
            results[str(batch)] = row
    out = {"backend": f"PyTorch {torch.__version__} "
                      f"{'torch.compile (inductor)' if compile else 'eager'}, {threads} threads, fp32",
           "threads": threads, "batches": results}
    if compile:
        out["compile_s"] = {"total": sum(compile_s.values()), "first_calls": compile_s}
    return out
