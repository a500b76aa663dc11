"""The suite's results against its targets (met / not met), a Markdown report and a plot."""
from __future__ import annotations

from pathlib import Path

from eqsdk import motion_check

PATHS = ("full", "motion", "drive", "background")
GRAPH_ROWS = ("graph:f_c", "graph:f_b", "graph:t_z", "graph:g", "graph:warp")
BUSY_LOAD = 0.5  # a 1-minute load average above this before the start: something else was running
BARS = {  # the suite's targets
    "full_vs_pytorch": "full render, batch 1: median ≤ 0.5 × PyTorch eager median, p99 ≤ 1.5 × median",
    "motion_vs_full": "new-motion-only render, batch 1: median ≤ 0.3 × full render median",
    "throughput_vs_peak": "full render, batch 32: ≥ 70% of the measured FP32 peak",
    "reduced_precision_vs_peak": "a reduced-precision path beats the FP32 peak (full render, batch 32, "
                                 "counted in the model's FLOPs), quality cost measured",
    "sdk_overhead": "SDK overhead at batch 1 ≤ 10%",
}


def median(section: dict | None, batch: int, path: str) -> float | None:
    """Median ms of a path at a batch in one backend's results, None where not measured."""
    try:
        return section["batches"][str(batch)][path]["median_ms"]
    except (KeyError, TypeError):
        return None


def gflops(results: dict, ms: float | None, batch: int, path: str) -> float | None:
    if ms is None:
        return None
    return results["flops"]["per_render"][path] * batch / (ms / 1e3) / 1e9


def target(bar: str, measured: str, met: bool | None) -> dict:
    return {"bar": bar, "measured": measured, "met": met}


def targets(r: dict) -> dict:
    """The five targets, each {bar, measured, met}; met is None where the batch it needs
    was not measured."""
    ort, eager, peak = r["ort"], r["torch_eager"], r["peak"]["fp32_peak"]
    full1, eager1 = median(ort, 1, "full"), median(eager, 1, "full")
    out = {}
    if full1 is not None:
        p99 = ort["batches"]["1"]["full"]["p99_ms"]
        out["full_vs_pytorch"] = target(
            BARS["full_vs_pytorch"],
            f"median {full1:.3f} ms = {full1 / eager1:.2f} × PyTorch eager {eager1:.3f} ms; "
            f"p99 {p99:.3f} ms = {p99 / full1:.2f} × median",
            full1 <= 0.5 * eager1 and p99 <= 1.5 * full1)
        motion1, drive1 = median(ort, 1, "motion"), median(ort, 1, "drive")
        flops = r["flops"]["per_render"]
        out["motion_vs_full"] = target(
            BARS["motion_vs_full"],
            f"{motion1:.3f} ms = {motion1 / full1:.2f} × full {full1:.3f} ms (FLOPs: "
            f"{flops['motion'] / flops['full']:.2f} × full); with the start frame cached (drive: a "
            f"new frame against a reference) {drive1:.3f} ms = {drive1 / full1:.2f} × full "
            f"(FLOPs {flops['drive'] / flops['full']:.2f} ×)",
            motion1 <= 0.3 * full1)
    else:
        out["full_vs_pytorch"] = target(BARS["full_vs_pytorch"], "batch 1 not measured", None)
        out["motion_vs_full"] = target(BARS["motion_vs_full"], "batch 1 not measured", None)
    g32 = gflops(r, median(ort, 32, "full"), 32, "full")
    out["throughput_vs_peak"] = target(
        BARS["throughput_vs_peak"],
        "not measured" if g32 is None else
        f"{g32:.1f} GFLOP/s = {g32 / peak:.0%} of {peak:.1f} GFLOP/s ({r['peak']['fp32_peak_source']})",
        None if g32 is None else g32 >= 0.7 * peak)
    if "int8" in r and g32 is not None:
        i32 = gflops(r, median(r["int8"]["ort"], 32, "full"), 32, "full")
        q = r["int8"]["quality"]
        cost = ", ".join(f"{t} MSE {q[t]['fp32_vs_truth']['mean']:.5f} → {q[t]['int8_vs_truth']['mean']:.5f} "
                         f"({q[t]['relative_cost']:+.1%})" for t in ("transformation", "background"))
        out["reduced_precision_vs_peak"] = target(
            BARS["reduced_precision_vs_peak"],
            f"int8: {i32:.1f} G(FL)OP/s = {i32 / peak:.0%} of the FP32 peak; {cost}", i32 > peak)
    else:
        out["reduced_precision_vs_peak"] = target(BARS["reduced_precision_vs_peak"],
                                                  "int8 or batch 32 not measured", None)
    frac = ort["overhead_batch1"]["sdk_fraction"]
    out["sdk_overhead"] = target(BARS["sdk_overhead"], f"{frac:.1%}", frac <= 0.10)
    return out


def limits(r: dict) -> list[str]:
    """For each unmet latency target, the bound the measured FLOPs and peak put on it."""
    t, fl, peak = r["targets"], r["flops"]["per_render"], r["peak"]["fp32_peak"]
    out = []
    if t["full_vs_pytorch"]["met"] is False:
        eager1, full1 = median(r["torch_eager"], 1, "full"), median(r["ort"], 1, "full")
        need = fl["full"] / (0.5 * eager1 / 1e3) / 1e9
        best = max(r["comparison"]["1"][g]["ort_gflops"] for g in GRAPH_ROWS)
        out.append(
            f"- **Full render ≤ 0.5 × PyTorch eager** needs {need:.0f} GFLOP/s at batch 1, "
            f"{need / peak:.0%} of the measured FP32 peak ({peak:.0f}). ONNX Runtime runs the render at "
            f"{gflops(r, full1, 1, 'full'):.0f} GFLOP/s ({gflops(r, full1, 1, 'full') / peak:.0%}) and its "
            f"best graph at {best:.0f}; PyTorch eager already runs it at {gflops(r, eager1, 1, 'full'):.0f} "
            f"({gflops(r, eager1, 1, 'full') / peak:.0%}). At fp32 the target needs fewer FLOPs, not faster "
            "kernels: a smaller model, integer kernels without their present quality cost "
            "(quantization-aware training), or a GPU.")
    if t["motion_vs_full"]["met"] is False:
        out.append(
            f"- **New motion ≤ 0.3 × full render**: every render runs g, and g alone is "
            f"{fl['graph:g'] / fl['full']:.2f} × the full render's FLOPs ({fl['graph:g'] / 1e6:.0f} of "
            f"{fl['full'] / 1e6:.0f} MFLOP), so no path that renders a new image can reach 0.3 × with this "
            f"decoder; the motion path's FLOPs are {fl['motion'] / fl['full']:.2f} × and its time "
            f"{median(r['ort'], 1, 'motion') / median(r['ort'], 1, 'full'):.2f} ×. Next: a cheaper g relative "
            "to the encoders (fewer channels at 32² and 64²).")
    if "int8" in r and t["reduced_precision_vs_peak"]["met"]:
        q = r["int8"]["quality"]["transformation"]["relative_cost"]
        if q > 0.1:
            out.append(f"- **int8** beats the FP32 peak but costs {q:+.0%} transformation MSE: measured, "
                       "not shipped. Next: quantization-aware training or fp32 for the most sensitive layers.")
    return out


def comparison(r: dict) -> dict:
    """{batch: {path: ...}}: each ONNX Runtime fp32 median beside PyTorch's, their ratio, and
    the achieved GFLOP/s and its share of the measured FP32 peak."""
    compiled = r.get("torch_compile") if "batches" in r.get("torch_compile", {}) else None
    out = {}
    for batch in r["settings"]["batches"]:
        row = out[str(batch)] = {}
        for path in PATHS + GRAPH_ROWS:
            ms, eager = median(r["ort"], batch, path), median(r["torch_eager"], batch, path)
            comp, g = median(compiled, batch, path), gflops(r, ms, batch, path)
            row[path] = {"ort_median_ms": ms, "eager_median_ms": eager, "ort_over_eager": ms / eager,
                         "compile_median_ms": comp, "ort_over_compile": None if comp is None else ms / comp,
                         "ort_gflops": g, "ort_fraction_of_fp32_peak": g / r["peak"]["fp32_peak"]}
    return out


def budget_note(settings: dict) -> str:
    if not settings.get("budget_s"):
        return ""
    return (f"; a row slower than that in {settings['budget_s']:g} s gets as many runs as fit (at "
            "least 20, column runs) after a tenth as many warm-up runs")


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def latency_table(r: dict) -> list[str]:
    lines = ["| batch | path | runs | ORT median ms | ORT p99 ms | PyTorch eager median ms | eager p99 ms | "
             "ORT / eager | torch.compile median ms | ORT / compile | renders/s (ORT) | "
             "ORT GFLOP/s | % of FP32 peak |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for batch, row in r["comparison"].items():
        for path, c in row.items():
            st = r["ort"]["batches"][batch][path]
            p99e = r["torch_eager"]["batches"][batch][path]["p99_ms"]
            rps = fmt(st["renders_per_s"], ",.0f") if "renders_per_s" in st else ""
            lines.append(f"| {batch} | {path} | {st['runs']} | {c['ort_median_ms']:.3f} | {st['p99_ms']:.3f} | "
                         f"{c['eager_median_ms']:.3f} | {p99e:.3f} | {c['ort_over_eager']:.2f} | "
                         f"{fmt(c['compile_median_ms'])} | {fmt(c['ort_over_compile'], '.2f')} | {rps} | "
                         f"{c['ort_gflops']:.1f} | {c['ort_fraction_of_fp32_peak']:.0%} |")
    return lines


def motion_check_table(r: dict) -> list[str]:
    """Full renders with the motion check against the same without it (latency_table's full row)."""
    lines = ["| batch | ORT median ms | ORT p99 ms | × unchecked | PyTorch eager median ms | eager p99 ms | "
             "ORT / eager |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for batch, row in r["motion_check"].items():
        ort, eager = row["ort"], row["torch_eager"]
        lines.append(f"| {batch} | {ort['median_ms']:.3f} | {ort['p99_ms']:.3f} | "
                     f"{ort['median_ms'] / median(r['ort'], int(batch), 'full'):.1f} | {eager['median_ms']:.3f} | "
                     f"{eager['p99_ms']:.3f} | {ort['median_ms'] / eager['median_ms']:.2f} |")
    return lines


def int8_table(r: dict) -> list[str]:
    i8, peak = r["int8"], r["peak"]["fp32_peak"]
    lines = ["| batch | path | int8 median ms | int8 p99 ms | fp32 median ms | int8 / fp32 | "
             "int8 G(FL)OP/s | % of FP32 peak |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for batch in r["settings"]["batches"]:
        for path in PATHS + GRAPH_ROWS:
            st = i8["ort"]["batches"][str(batch)][path]
            fp = median(r["ort"], batch, path)
            g = gflops(r, st["median_ms"], batch, path)
            lines.append(f"| {batch} | {path} | {st['median_ms']:.3f} | {st['p99_ms']:.3f} | {fp:.3f} | "
                         f"{st['median_ms'] / fp:.2f} | {g:.1f} | {g / peak:.0%} |")
    q = i8["quality"]
    lines += ["", f"Quality on {q['examples']} test examples ({q['units']}; mean ± 95% CI):", "",
              "| manipulation | fp32 vs truth | int8 vs truth | change | int8 vs fp32 | max abs int8 − fp32 |",
              "|---|---|---|---:|---|---:|"]
    for t in ("transformation", "background"):
        a, b, d = q[t]["fp32_vs_truth"], q[t]["int8_vs_truth"], q[t]["int8_vs_fp32"]
        lines.append(f"| {t} | {a['mean']:.5f} ± {a['ci95']:.5f} | {b['mean']:.5f} ± {b['ci95']:.5f} | "
                     f"{q[t]['relative_cost']:+.1%} | {d['mean']:.6f} ± {d['ci95']:.6f} | "
                     f"{q[t]['int8_vs_fp32_max_abs']:.3f} |")
    lines += ["", "Kernels after ONNX Runtime's optimisations (optimized_model_filepath):", ""]
    for graph, k in i8["kernels"].items():
        ops = ", ".join(f"{op} ×{n}" for op, n in k["ops"].items())
        lines.append(f"- {graph}: {k['integer_kernels']} integer kernels; {ops}")
    bf16 = i8["bf16_onnxruntime"]
    lines += ["", f"ONNX Runtime bf16 on this CPU: {'yes' if bf16['available'] else 'no'} ({bf16['reason']})"]
    return lines


def markdown(r: dict) -> str:
    env, ort, peak, fl = r["environment"], r["ort"], r["peak"], r["flops"]
    cpu = env["cpu"]
    lines = [f"# Latency suite: {ort['model']}", "",
             f"`{r['command']}` — {r['started']}", "",
             f"{cpu['model']} (family {cpu.get('family')}, model {cpu.get('model_number')}), "
             f"{cpu['cores']} cores; flags: {', '.join(cpu['flags'])}; absent: "
             f"{', '.join(cpu.get('missing_flags', []))}. Load average at start "
             f"{env['load_average_at_start'][0]:.2f}, at end {env['load_average_at_end'][0]:.2f}.",
             f"onnxruntime {env['onnxruntime']}, torch {env['torch']}, numpy {env['numpy']}, "
             f"python {env['python']}. Threads: ONNX Runtime {env['threads']['onnxruntime']}; "
             f"PyTorch {env['threads']['torch']}, fp32, under torch.inference_mode.",
             f"Statistics over {r['settings']['runs']} timed runs after {r['settings']['warmup']} "
             "warm-up runs per row (median, not mean)" + budget_note(r['settings']) + ".", ""]
    if env["load_average_at_start"][0] > BUSY_LOAD:
        lines += [f"**Warning: the machine was busy (1-minute load average {env['load_average_at_start'][0]:.2f} "
                  "before the suite started): these figures are not representative. PyTorch's OpenMP "
                  "threads suffer most from sharing the cores.**", ""]
    lines += ["## Targets", "",
             "| target | measured | met |", "|---|---|---|"]
    for t in r["targets"].values():
        met = {True: "**met**", False: "**not met**", None: "not evaluated"}[t["met"]]
        lines.append(f"| {t['bar']} | {t['measured']} | {met} |")
    p = r["parity"]
    why = limits(r)
    if why:
        lines += ["", "What bounds the unmet figures:", ""] + why
    lines += ["", "## Same model", "",
              f"PyTorch SceneModel rebuilt from the bundle's ONNX initializers "
              f"({p['weights']['from_initializers']} tensors by name) and the graph "
              f"({len(p['weights']['from_graph'])} GroupNorm parameters, exported as unnamed constants; "
              f"{len(p['weights']['zero_bias'])} all-zero conv biases the exporter dropped): "
              f"max abs difference of a render vs eqsdk {p['max_abs_diff_render']:.2e} "
              f"(tolerance {p['tolerance']:.0e}: {'passed' if p['passed'] else 'FAILED'}).", "",
              "## fp32 latency, ONNX Runtime vs PyTorch", ""]
    lines += latency_table(r)
    ov = ort["overhead_batch1"]
    lines += ["", f"ONNX Runtime: session creation {ort['session_creation_s'] * 1e3:.0f} ms, first call "
                  f"{ort['first_call_s'] * 1e3:.1f} ms; SDK overhead at batch 1 (one-call render of uint8 "
                  f"images minus its graph time) {ov['sdk_fraction']:.1%}: end to end "
                  f"{ov['end_to_end']['median_ms']:.3f} ms median, graphs {ov['graphs']['median_ms']:.3f} ms."]
    tc = r.get("torch_compile")
    if tc is None:
        lines.append("torch.compile: skipped.")
    elif "error" in tc:
        lines.append(f"torch.compile failed: {tc['error']}")
    else:
        lines.append(f"torch.compile (inductor, dynamic=False): {tc['compile_s']['total']:.1f} s compiling "
                     "(first calls of every path and batch), not in the figures above.")
    if "motion_check" in r:
        lines += ["", "## A full render with the motion check", "",
                  "The table above times the graphs as they are. The mnist bundle also checks T^Z's reading "
                  f"of each motion by rendering it turned by every {motion_check.STEP:g}° up to "
                  f"±{motion_check.SCAN:g}° (eqsdk.motion_check): {len(motion_check.turns())} more runs of the "
                  "warp and g per motion. The same with PyTorch (SceneModel(..., checked=True)):", ""]
        lines += motion_check_table(r)
    lines += ["", "## FLOPs and peak", "",
              f"FLOPs: {fl['method']}. Per render: " +
              ", ".join(f"{k} {v / 1e6:.1f} MFLOP" for k, v in fl["per_render"].items()) + ".", "",
              f"Measured peaks, best of {peak['runs']} products of {peak['n']}×{peak['n']} matrices, "
              f"{peak['threads']} threads: torch fp32 {peak['torch_fp32']:.1f}, numpy fp32 "
              f"{peak['numpy_fp32']:.1f}, ONNX Runtime fp32 {peak['ort_fp32']:.1f} GFLOP/s → FP32 peak "
              f"{peak['fp32_peak']:.1f} GFLOP/s; torch bf16 {peak['torch_bf16']:.1f} GFLOP/s; "
              f"ONNX Runtime int8 (MatMulInteger u8×s8) {peak['ort_int8']:.1f} GOP/s, "
              f"{peak['ort_int8'] / peak['ort_fp32']:.1f}× its fp32 MatMul (AVX512-VNNI's vpdpbusd does "
              "64 u8×s8 multiply-adds per instruction, an fp32 FMA 16; without VNNI the same takes three "
              "instructions)."]
    if "int8" in r:
        lines += ["", f"## int8 (ONNX Runtime, QDQ static quantization of {', '.join(r['int8']['precision']['int8'])})", "",
                  f"{r['int8']['precision']['method']}; kept fp32: " +
                  "; ".join(f"{g}: {', '.join(n)}" for g, n in r["int8"]["precision"]["fp32_nodes"].items()) +
                  ", and the graphs " + ", ".join(r["int8"]["precision"]["fp32"]) + ".", ""]
        lines += int8_table(r)
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = {"ONNX Runtime fp32": r["ort"], "PyTorch eager": r["torch_eager"]}
    if "batches" in r.get("torch_compile", {}):
        backends["torch.compile"] = r["torch_compile"]
    if "int8" in r:
        backends["ONNX Runtime int8"] = r["int8"]["ort"]
    batches = r["settings"]["batches"]
    fig, axes = plt.subplots(1, len(PATHS), figsize=(4.5 * len(PATHS), 4), sharey=True)
    for ax, name in zip(axes, PATHS):
        for label, section in backends.items():
            ax.plot(batches, [median(section, b, name) for b in batches], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch")
        ax.set_title(f"{name} path")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("median latency per call (ms)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{r['ort']['model']} on {r['environment']['cpu']['model']}, "
                 f"{r['environment']['cpu']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
