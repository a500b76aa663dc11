"""Latency of a loaded model, measured like trtexec / onnxruntime_perf_test: warm-up, then many
timed runs, reported as median, p90, p99, mean, min and max (`eqsdk bench`).

Paths that matter to an app:
  full        a whole render: f_c on three images, f_b, T^Z (theta and apply), g
  motion      a new motion on a cached character and background: f_c on two frames, T^Z, g
  drive       a new driving frame against a cached reference frame (animate, live puppeteering):
              f_c on one frame, T^Z, g
  drive_reader  the same with the bundle's motion reader, where it has one (Renderer reader=True):
              the reader on the reference and the new frame, the warp, g
  background  a new background under a cached character and motion: f_b, warp, g
and each graph alone. Session creation and the first call are reported separately.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from eqsdk.errors import InputError
from eqsdk.graphs import GRAPHS, resolve
from eqsdk.verify import random_inputs

BUDGET_S = 1.5  # seconds per measurement by default (time_calls); `eqsdk bench --thorough`: none
MAX_BATCH = 1024


def parse_batches(text: str) -> list[int]:
    """"1,8,32" -> [1, 8, 32]: distinct sizes from 1 to MAX_BATCH."""
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or not all(1 <= b <= MAX_BATCH for b in sizes) or len(set(sizes)) != len(sizes):
        raise InputError(f"--batch {text!r}: expected distinct batch sizes from 1 to {MAX_BATCH}, "
                         "comma-separated, like 1,8,32")
    return sizes


def parse_backends(text: str) -> list[str]:
    """"cpu,cuda" or "all" -> backend names, each available here (else a BackendError with its
    install hint)."""
    from eqsdk.backends import BACKENDS, available, resolve_name

    if text == "all":
        return [n for n, reason in available().items() if reason is None]
    names = text.split(",")
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or len(set(names)) != len(names):
        raise InputError(f"--backend {text!r}: expected distinct names among {', '.join(BACKENDS)}, "
                         "comma-separated, or all")
    return [resolve_name(n) for n in names]


def check_json_path(path: Path, overwrite: bool) -> None:
    """The report's file can be written, and is not replaced unless asked."""
    from eqsdk.images import check_place

    if path.is_dir():
        raise InputError(f"--json {str(path)!r} is a directory; expected a file name")
    if path.exists() and not overwrite:
        raise InputError(f"--json {str(path)!r} exists; pass --force to replace it")
    try:
        check_place(path)
    except InputError as e:
        raise InputError(f"--json: {e}") from None


def write_json(reports: list[dict], path: Path, overwrite: bool) -> None:
    """Atomically: a temporary file beside `path`, then renamed onto it."""
    from eqsdk.images import replacing

    check_json_path(path, overwrite)
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(reports, indent=2) + "\n")


def stats(seconds: np.ndarray) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "max_ms": float(ms.max()), "runs": len(ms)}


def time_calls(fn, runs: int, warmup: int, budget_s: float | None = None, min_runs: int = 20) -> dict:
    """`runs` timed calls after `warmup` untimed ones. With budget_s, a slow call (a large batch)
    gets fewer: as many as fit in budget_s, never fewer than min_runs, with a warm-up of a tenth
    of them; the count is in the result."""
    if budget_s:  # None or 0: all `runs`
        t0 = time.perf_counter()
        fn()
        fit = int(budget_s / max(time.perf_counter() - t0, 1e-9))
        runs = max(min(runs, min_runs), min(runs, fit))
        warmup = min(warmup, max(2, runs // 10))
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for k in range(runs):
        t0 = time.perf_counter()
        fn()
        times[k] = time.perf_counter() - t0
    return stats(times)


def paths(renderer, batch: int, seed: int = 0) -> dict:
    """The calls to time at one batch size: each path and each graph, inputs prepared."""
    from eqsdk.renderer import Encoding, Renderer

    b, s, cfg = renderer.backend, renderer.image_size, renderer.manifest.config
    rng = np.random.default_rng(seed)
    x_c, x_t1, x_t2, x_b = rng.random((4, batch, 3, s, s), dtype=np.float32)
    character = Encoding("character", b.run("f_c", x=b.upload(x_c))["z"], batch, False)
    background = Encoding("background", b.run("f_b", x=b.upload(x_b))["z"], batch, False)
    motion = Encoding("motion", renderer.motion_arrays(x_t1, x_t2), batch, False)
    reference = Encoding("character", b.run("f_c", x=b.upload(x_t1[:1]))["z"], 1, True)
    calls = {
        "full": lambda: renderer.render_arrays(x_c, x_t1, x_t2, x_b),
        "motion": lambda: renderer.drive(character, background, x_t1, x_t2),
        "drive": lambda: renderer.drive(character, background, reference, x_t2),
        "background": lambda: renderer.compose_arrays(
            character, motion, Encoding("background", b.run("f_b", x=b.upload(x_b))["z"], batch, False),
            batch),
    }
    if "reader" in renderer.manifest.graphs:
        reader = Renderer(b, renderer.manifest, reader=True)
        calls["drive_reader"] = lambda: reader.drive(character, background, x_t1[:1], x_t2)
    for graph in renderer.manifest.graphs:
        sizes = 3 * batch if graph == "f_c" else batch  # f_c runs on all three images at once
        inputs = {k: b.upload(v) for k, v in random_inputs(graph, cfg, sizes, seed).items()}
        calls[f"graph:{graph}"] = lambda graph=graph, inputs=inputs: b.download(
            next(iter(b.run(graph, **inputs).values())))
    return calls


def overhead(renderer, runs: int, warmup: int) -> dict:
    """The SDK's own time at batch 1: the one-call render of uint8 images, minus the time its
    graph calls take (timed inside the same calls)."""
    s = renderer.image_size
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for _ in range(4)]
    backend, inside = renderer.backend, []

    def timed(method):
        def call(name, **inputs):
            t0 = time.perf_counter()
            out = method(name, **inputs)
            inside[-1] += time.perf_counter() - t0
            return out
        return call

    total = []
    backend.run, backend.run_path = timed(backend.run), timed(backend.run_path)  # graphs and whole paths
    try:
        for k in range(warmup + runs):
            inside.append(0.0)
            t0 = time.perf_counter()
            renderer.render(char=imgs[0], bg=imgs[1], anim=(imgs[2], imgs[3]))
            total.append(time.perf_counter() - t0)
    finally:
        del backend.run, backend.run_path  # back to the class's methods
    total, inside = np.array(total[warmup:]), np.array(inside[warmup:])
    return {"end_to_end": stats(total), "graphs": stats(inside),
            "sdk_fraction": float(np.median(total - inside) / np.median(total))}


def environment(renderer) -> dict:
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:  # the model name, where Linux tells it
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "onnxruntime": ort.__version__,
            "backend": renderer.backend.describe(), "precision": renderer.backend.precision}


def bench(model: str, backend: str = "cpu", batches=(1, 8, 32), runs: int = 200,
          warmup: int = 20, threads: int | None = None, precision: str = "auto",
          budget_s: float | None = None, check_motion: bool = False, progress=None) -> dict:
    """Everything `eqsdk bench` reports for one backend (see the module doc); budget_s caps the
    time of each measurement (time_calls). The full, motion and drive paths check each motion
    where the renderer does (check_motion=True). `progress(done, total, what)` is called before
    each measurement."""
    import eqsdk

    t0 = time.perf_counter()
    renderer = eqsdk.load(model, backend=backend, threads=threads, precision=precision,
                          check_motion=check_motion)
    load_s = time.perf_counter() - t0
    first_s = renderer.warmup()
    per_batch = 4 + ("reader" in renderer.manifest.graphs) + len(renderer.manifest.graphs)
    results, total = {}, len(batches) * per_batch + 1
    done = 0
    for batch in batches:
        row = {}
        for name, fn in paths(renderer, batch).items():
            if progress:
                progress(done, total, f"batch {batch}, {name}")
            done += 1
            row[name] = time_calls(fn, runs, warmup, budget_s)
            if not name.startswith("graph:"):
                row[name]["renders_per_s"] = batch / (row[name]["median_ms"] / 1e3)
        results[str(batch)] = row
    if progress:
        progress(done, total, "the SDK's overhead at batch 1")
    sdk = overhead(renderer, runs if not budget_s else min(runs, 100), warmup)
    if progress:
        progress(total, total, "done")
    return {"model": renderer.name, "backend": renderer.backend.name, "check_motion": renderer.check_motion,
            "session_creation_s": load_s, "first_call_s": first_s, "budget_s": budget_s,
            "overhead_batch1": sdk, "batches": results,
            "shapes": {g: {k: list(resolve(v, renderer.manifest.config)) for k, v in spec.inputs.items()}
                       for g, spec in GRAPHS.items() if g in renderer.manifest.graphs},
            "environment": environment(renderer)}


def table(report: dict) -> str:
    """Markdown: one row per batch size and path/graph."""
    check = ", motion checked (full, motion, drive)" if report.get("check_motion") else ""
    lines = [f"**{report['model']}** on {report['environment']['backend']}{check} — "
             f"session creation {report['session_creation_s'] * 1e3:.0f} ms, first call "
             f"{report['first_call_s'] * 1e3:.1f} ms, SDK overhead at batch 1 "
             f"{report['overhead_batch1']['sdk_fraction']:.1%}", "",
             "| batch | path | median ms | p90 ms | p99 ms | mean ms | min ms | max ms | renders/s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for batch, row in report["batches"].items():
        for name, st in row.items():
            rps = f"{st['renders_per_s']:,.0f}" if "renders_per_s" in st else ""
            lines.append(f"| {batch} | {name} | {st['median_ms']:.3f} | {st['p90_ms']:.3f} | "
                         f"{st['p99_ms']:.3f} | {st['mean_ms']:.3f} | {st['min_ms']:.3f} | "
                         f"{st['max_ms']:.3f} | {rps} |")
    return "\n".join(lines)
