"""What a runtime and precision cost in quality, and what they gain in speed: ONNX Runtime fp32
(the reference), OpenVINO fp32 and OpenVINO bf16, on the bundled mnist model.

Quality: the Transformation and Background manipulations of train.evaluate on `--examples` test
examples, rendered through eqsdk (each path's Renderer.render_arrays): per-pixel MSE against the
ground truth for each path, and each path against ONNX Runtime fp32 (MSE and max abs pixel
difference, images in [0, 1]). Speed: the full render (f_c on three images, f_b, T^Z, g), median
and p90 of `--runs` timed calls after a warm-up, at batch 1 and 32.

    python -m benchmarks.precision_quality    # writes benchmarks/results/precision_quality.md

Needs the mnist data (EQSDK_DATA), torch (train.evaluate draws the examples) and openvino.
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np

PATHS = (("ONNX Runtime fp32", "cpu", "fp32"), ("OpenVINO fp32", "openvino", "fp32"),
         ("OpenVINO bf16", "openvino", "bf16"))
TASKS = {"transformation": ("x2i", "x1i", "x1j", "x2i"), "background": ("x1i", "x1i", "x1j", "x2j")}
OUT = Path(__file__).parent / "results" / "precision_quality.md"


def examples(renderer, count: int, seed: int) -> dict[str, np.ndarray]:
    """train.evaluate's test examples: the images each task renders from and its ground truth."""
    import torch

    from train.evaluate import manipulation_examples
    from train.moving_mnist import MovingMNIST

    training = renderer.manifest.training
    data_seed = (training.train_config if training else {}).get("seed", 0)
    data = MovingMNIST("test", n_digits=1, n_backgrounds=64, seed=data_seed)
    ex = manipulation_examples(data, count, np.random.default_rng([seed, 3]))
    return {k: v.numpy() for k, v in ex.items() if isinstance(v, torch.Tensor)}


def render_task(renderer, ex: dict, task: str, batch: int = 250) -> np.ndarray:
    """(N, 3, S, S) renders of one task, in batches."""
    keys, n = TASKS[task], len(ex["x1i"])
    return np.concatenate([renderer.render_arrays(*(ex[k][i:i + batch] for k in keys))
                           for i in range(0, n, batch)])


def quality(renderers: dict, ex: dict) -> dict:
    """Per path and task: MSE vs truth (mean and 95% CI), MSE and max abs difference vs the first
    path's renders."""
    from train.evaluate import summary

    out = {}
    for task in TASKS:
        renders = {name: render_task(r, ex, task) for name, r in renderers.items()}
        reference = next(iter(renders.values()))
        for name, x in renders.items():
            diff = x - reference
            out.setdefault(name, {})[task] = {
                "vs_truth": summary(((x - ex[f"gt_{task}"]) ** 2).mean(axis=(1, 2, 3))),
                "vs_reference_mse": float((diff ** 2).mean()),
                "vs_reference_max_abs": float(np.abs(diff).max()),
                # the share of pixel values that would change by more than 2 of 255 levels
                "vs_reference_over_2_levels": float((np.abs(diff) > 2 / 255).mean())}
    return out


def latency(renderer, batch: int, runs: int, seed: int = 0) -> dict:
    from eqsdk.bench import time_calls

    s = renderer.image_size
    x = np.random.default_rng(seed).random((4, batch, 3, s, s), dtype=np.float32)
    return time_calls(lambda: renderer.render_arrays(*x), runs, warmup=max(5, runs // 10))


def markdown(machine: dict, describe: dict, q: dict, speed: dict, args) -> str:
    ref = next(iter(q))
    lines = [
        "# Precision and quality: ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16",
        "",
        "`python -m benchmarks.precision_quality` (benchmarks/precision_quality.py)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({', '.join(machine['flags'])}), "
        f"Python {machine['python']}, onnxruntime {machine['onnxruntime']}, openvino "
        f"{machine['openvino']}. Load average at the start: {machine['load']}.",
        "",
        "Runtimes as loaded:",
        "",
        *[f"- {name}: {line}" for name, line in describe.items()],
        "",
        f"## Quality on {args.examples} test examples (bundled mnist model)",
        "",
        "Per-pixel MSE against the ground truth (mean ± 95% CI of per-example values), its change "
        f"against {ref}, and the difference from {ref}'s renders (images in [0, 1]; max abs also "
        "in 8-bit levels).",
        "",
        "| path | Transformation MSE | change | Background MSE | change | MSE vs ref | max abs vs ref "
        "| values > 2/255 off ref |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {t: q[ref][t]["vs_truth"]["mean"] for t in TASKS}
    for name, tasks in q.items():
        t, b = tasks["transformation"], tasks["background"]
        worst = max(t["vs_reference_max_abs"], b["vs_reference_max_abs"])
        mse_ref = (t["vs_reference_mse"] + b["vs_reference_mse"]) / 2
        over = (t["vs_reference_over_2_levels"] + b["vs_reference_over_2_levels"]) / 2
        lines.append(
            f"| {name} | {t['vs_truth']['mean']:.5f} ± {t['vs_truth']['ci95']:.5f} "
            f"| {t['vs_truth']['mean'] / base['transformation'] - 1:+.2%} "
            f"| {b['vs_truth']['mean']:.5f} ± {b['vs_truth']['ci95']:.5f} "
            f"| {b['vs_truth']['mean'] / base['background'] - 1:+.2%} "
            f"| {mse_ref:.2e} | {worst:.2e} ({worst * 255:.1f}/255) | {over:.3%} |")
    lines += [
        "",
        f"## Full render latency (median and p90 of {args.runs} calls after a warm-up)",
        "",
        "From this run, at the load average above; `python -m benchmarks.suite` measures "
        "latency in interleaved rounds (docs/benchmarks.md).",
        "",
        "| path | " + " | ".join(f"batch {b} median ms | p90 ms | renders/s" for b in args.batches) + " |",
        "|---|" + "---:|---:|---:|" * len(args.batches),
    ]
    for name, by_batch in speed.items():
        cells = [f"{s['median_ms']:.2f} | {s['p90_ms']:.2f} | {b * 1e3 / s['median_ms']:.0f}"
                 for b, s in by_batch.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    import onnxruntime
    import openvino

    import eqsdk
    from benchmarks.flops import cpu_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist", help="a Moving MNIST bundle [default: mnist]")
    p.add_argument("--examples", type=int, default=500, help="test examples [default: 500]")
    p.add_argument("--runs", type=int, default=200, help="timed full renders per batch size [default: 200]")
    p.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 32],
                   help="batch sizes for the latency [default: 1,32]")
    p.add_argument("--threads", type=int, help="threads per graph [default: eqsdk's]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    cpu = cpu_info()
    machine = {"cpu": cpu["model"], "cores": cpu["cores"], "flags": cpu["flags"],
               "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
               "openvino": openvino.get_version().split("-")[0],
               "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    renderers = {name: eqsdk.load(args.model, backend=backend, precision=precision, threads=args.threads)
                 for name, backend, precision in PATHS}
    describe = {name: r.backend.describe() for name, r in renderers.items()}
    ex = examples(next(iter(renderers.values())), args.examples, args.seed)
    q = quality(renderers, ex)
    for name, tasks in q.items():
        print(name, {t: round(v["vs_truth"]["mean"], 6) for t, v in tasks.items()},
              "max abs vs ref", max(v["vs_reference_max_abs"] for v in tasks.values()), flush=True)
    speed = {}
    for name, r in renderers.items():
        speed[name] = {b: latency(r, b, args.runs) for b in args.batches}
        print(name, {b: round(s["median_ms"], 2) for b, s in speed[name].items()}, "ms", flush=True)
    from eqsdk.images import replacing

    with replacing(args.out) as tmp:
        tmp.write_text(markdown(machine, describe, q, speed, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
