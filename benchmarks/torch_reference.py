"""The PyTorch reference for a bundle: the SceneModel rebuilt from the bundle's own graphs
(export.from_bundle), and the same calls eqsdk.bench times, in PyTorch (eager or torch.compile).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import torch

from eqsdk import motion_check
from eqsdk.bundle import read_manifest
from export.from_bundle import NETWORKS, from_bundle
from export.to_onnx import graph_modules
from train.model import SceneModel, turn_about


def model_from_bundle(directory: Path) -> tuple[SceneModel, dict]:
    """The bundle's SceneModel in eval mode, and how its parameters were found:
    {"from_initializers": n, "from_graph": [GroupNorm keys], "zero_bias": [keys], "config": {...}}."""
    directory = Path(directory)
    manifest = read_manifest(directory)  # checks the schema and every file's sha256
    model, _ = from_bundle(directory)
    from_initializers, from_graph, zero_bias = 0, [], []
    for name in NETWORKS:
        graph = onnx.load(directory / manifest.graphs[name].file).graph
        named = {t.name for t in graph.initializer}
        module = getattr(model, name)
        for key in module.state_dict():
            if key in named:
                from_initializers += 1
            elif isinstance(module.get_submodule(key.rsplit(".", 1)[0]), torch.nn.GroupNorm):
                from_graph.append(f"{name}.{key}")
            else:
                zero_bias.append(f"{name}.{key}")  # from_bundle raises for any other gap
    return model, {"from_initializers": from_initializers, "from_graph": from_graph,
                   "zero_bias": zero_bias, "config": dict(manifest.config)}


def parity(model: SceneModel, renderer, batch: int = 4, seed: int = 0) -> float:
    """Max abs difference of a full render, PyTorch vs the eqsdk renderer, same inputs."""
    s = renderer.image_size
    rng = np.random.default_rng(seed)
    x = rng.random((4, batch, 3, s, s), dtype=np.float32)
    with torch.inference_mode():
        ref = model(*(torch.from_numpy(a) for a in x)).numpy()
    return float(np.abs(ref - renderer.render_arrays(*x)).max())


class FullRender(torch.nn.Module):
    """A full render as eqsdk runs it (Renderer.render_arrays, no motion check): f_c once on the
    three images concatenated along the batch, T^Z, f_b, g. With bf16, under CPU bf16 autocast
    (the image comes back float32)."""

    def __init__(self, model: SceneModel, bf16: bool = False):
        super().__init__()
        self.f_c, self.f_b, self.t_z, self.g, self.bf16 = model.f_c, model.f_b, model.t_z, model.g, bf16

    def forward(self, x_c, x_t1, x_t2, x_b):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            z_c, z_t1, z_t2 = self.f_c(torch.cat([x_c, x_t1, x_t2])).chunk(3)
            image = self.g(self.t_z(z_t1, z_t2, z_c)[-1], self.f_b(x_b))
        return image.float()


def compiled_full_render(model: SceneModel, inputs, bf16: bool = False, mode: str = "default") -> tuple:
    """(fn, record): FullRender compiled for the shapes of `inputs` (one batch size) with
    inductor's freezing (weights folded in as constants), dynamic=False and fullgraph=True (a
    graph break is an error, never a silent fall-back to eager), and its first call made. record
    says how it compiled: seconds, mode, dynamo's graph and recompile counts."""
    from torch._dynamo.utils import counters
    from torch._inductor import config as inductor

    inductor.freezing = True
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    counters.clear()
    fn = torch.compile(FullRender(model, bf16).eval(), mode=mode, dynamic=False, fullgraph=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        fn(*inputs)
    compile_s = time.perf_counter() - t0
    record = {"mode": mode, "freezing": True, "dynamic": False, "fullgraph": True,
              "bf16_autocast": bf16, "compile_s": compile_s,
              "unique_graphs": int(counters["stats"]["unique_graphs"]),
              "graph_breaks": int(sum(counters["graph_break"].values())),
              "recompiles": int(sum(v for k, v in counters["recompiles"].items())) if "recompiles" in counters else 0}
    return fn, record


def checked_full_render(model: SceneModel, x_c, x_t1, x_t2, x_b):
    """SceneModel(..., checked=True) batched as eqsdk batches it: f_c once on the three images,
    and the K candidate turns of each motion rendered in one (K * B) batch through the warp and g
    (SceneModel.checked_theta renders them one candidate at a time)."""
    n = len(x_c)
    z_c, z_t1, z_t2 = model.f_c(torch.cat([x_c, x_t1, x_t2])).chunk(3)
    t_z = model.t_z
    theta = t_z.theta(z_t1, z_t2)  # (B, 2, 3)
    pivot = t_z.centre(z_t2)
    tries = torch.stack([theta] + [t_z.compose(theta, turn_about(pivot, d)) for d in motion_check.turns()])
    k = len(tries)  # (K, B, 2, 3)
    b_t2 = model.f_b(x_t2)
    renders = model.g(t_z.apply(tries.reshape(k * n, 2, 3), z_t1.repeat(k, 1, 1, 1)), b_t2.repeat(k, 1, 1, 1))
    losses = (renders - x_t2.repeat(k, 1, 1, 1)).square().mean(dim=(1, 2, 3)).reshape(k, n)
    best = losses.argmin(0)
    best = torch.where(losses.min(0).values < motion_check.MARGIN * losses[0], best, 0)
    z_moved = t_z.move(tries[best, torch.arange(n)], t_z.centre(z_t1), z_c)
    return model.g(z_moved, model.f_b(x_b))


class Graphs:
    """The modules behind the five graphs, eager or compiled, called with the graphs' inputs."""

    def __init__(self, model: SceneModel, compile: bool = False):
        modules = graph_modules(model)
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
