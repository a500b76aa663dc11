"""The suite's results against its targets (met / not met), a Markdown report and a plot."""
from __future__ import annotations

from pathlib import Path

from eqsdk import motion_check

PATHS = ("full", "motion", "drive", "drive_reader", "background")
GRAPH_ROWS = ("graph:f_c", "graph:f_b", "graph:t_z", "graph:g", "graph:warp", "graph:reader")
BUSY_LOAD = 0.5  # a 1-minute load average above this before the start: something else was running
# The rows the latency targets are about: eqsdk's fastest default, the openvino backend at its
# default precision (bf16 where the CPU has it), a full render and the drive path.
EQSDK = "eqsdk openvino bf16 (one call)"
DRIVE = "eqsdk openvino bf16, drive"
DRIVE_READER = "eqsdk openvino bf16, drive with the reader"
EQSDK_CPU = "eqsdk cpu fp32 (ONNX Runtime, 4 sessions)"  # the exact default, always installed
EAGER = "PyTorch eager fp32"
COMPILE_BF16 = "torch.compile + bf16 autocast"
REDUCED = (EQSDK,)  # eqsdk's reduced-precision paths
EXACT = (EQSDK_CPU, "eqsdk openvino fp32 (one call)")  # eqsdk's exact (fp32) paths
BARS = {  # the targets, as ratios measured in one run
    "full_vs_eager": ("full render, batch 1: median ≤ 0.3 × PyTorch eager fp32", 0.3),
    "full_vs_compile_bf16": ("full render, batch 1: median ≤ 0.6 × torch.compile (freezing) + bf16", 0.6),
    "p99": ("full render, batch 1: p99 ≤ 1.5 × median", 1.5),
    "reduced_vs_bf16_peak": ("batch 32, reduced-precision path: ≥ 85% of the measured bf16 peak", 0.85),
    "exact_vs_fp32_peak": ("batch 32, exact path: ≥ 75% of the measured fp32 peak", 0.75),
    "drive_vs_full": ("cached-encoding path (drive), batch 1: median ≤ 0.5 × the full render", 0.5),
    "drive_reader_vs_full": ("cached-encoding path with the motion reader (drive_reader), batch 1: "
                             "median ≤ 0.5 × the full render", 0.5),
    "sdk_overhead": ("SDK overhead outside the graphs at batch 1 ≤ 10%", 0.10),
}


def median(section: dict | None, batch: int, path: str) -> float | None:
    """Median ms of a path at a batch in one eqsdk.bench report, None where not measured."""
    try:
        return section["batches"][str(batch)][path]["median_ms"]
    except (KeyError, TypeError):
        return None


def gflops(r: dict, ms: float, batch: int, path: str) -> float:
    """G(FL)OP/s of a path at a batch from its median ms."""
    return r["flops"]["per_render"][path] * batch / (ms / 1e3) / 1e9


def row(r: dict, batch: int, label: str) -> dict | None:
    """One row's statistics at a batch, None where not measured."""
    return r.get("rows", {}).get(str(batch), {}).get(label)


def rate(r: dict, batch: int, st: dict) -> float:
    """G(FL)OP/s of a row: its path's FLOPs per render × batch / its median time."""
    return r["flops"]["per_render"][st["path"]] * batch / (st["median_ms"] / 1e3) / 1e9


def check_peaks(r: dict) -> list[dict]:
    """Reliable rows faster than their precision's measured peak: each raises the peak to its
    rate (flops.raise_peaks) and is flagged above_peak; returns [{batch, row, gflops}]."""
    from benchmarks.flops import raise_peaks

    rates = {(b, label): (st["precision"], rate(r, int(b), st))
             for b, rs in r["rows"].items() for label, st in rs.items() if st["reliable"]}
    above = raise_peaks(r["peak"], {f"{label} (batch {b})": v for (b, label), v in rates.items()})
    out = []
    for (b, label), (_, g) in rates.items():
        if f"{label} (batch {b})" in above:
            r["rows"][b][label]["above_peak"] = True
            out.append({"batch": int(b), "row": label, "gflops": g})
    return out


def target(key: str, measured: str, ratio: float | None, at_most: bool = True, why: str = "") -> dict:
    """{bar, measured, ratio, met}: met None (not scored) where a figure is missing or unreliable."""
    bar, limit = BARS[key]
    met = None if ratio is None or why else (ratio <= limit if at_most else ratio >= limit)
    return {"bar": bar, "measured": measured + (f" — not scored: {why}" if why else ""), "ratio": ratio,
            "limit": limit, "met": met}


def unreliable(**rows: dict | None) -> str:
    """Why a ratio of these rows (label=stats) is not scored, or ""."""
    if any(st is None for st in rows.values()):
        return "a row was not measured"
    bad = [f"{label}: round medians spread {st['spread']:.0%}" for label, st in rows.items() if not st["reliable"]]
    return "unreliable (" + "; ".join(bad) + ")" if bad else ""


def ratio_target(r: dict, key: str, num: str, den: str, batch: int = 1) -> dict:
    a, b = row(r, batch, num), row(r, batch, den)
    why = unreliable(**{num: a, den: b})
    if a is None or b is None:
        return target(key, "not measured", None, why=why)
    x = a["median_ms"] / b["median_ms"]
    return target(key, f"{num} {a['median_ms']:.3f} ms / {den} {b['median_ms']:.3f} ms = {x:.2f}", x, why=why)


def peak_target(r: dict, key: str, labels: tuple, precision: str) -> dict:
    """The best reliable eqsdk row of `labels` at batch 32 against a precision's peak."""
    peak = r["peak"]["peak"][precision]
    found = {label: row(r, 32, label) for label in labels if row(r, 32, label) is not None}
    if not found:
        return target(key, "batch 32 not measured", None, at_most=False, why="a row was not measured")
    scored = {k: st for k, st in found.items() if st["reliable"]} or found
    label, st = max(scored.items(), key=lambda kv: rate(r, 32, kv[1]))
    g = rate(r, 32, st)
    return target(key, f"{label}: {g:.1f} GFLOP/s = {g / peak['value']:.0%} of {peak['value']:.1f} "
                       f"({precision} peak, {peak['raised_by'] or peak['source']})",
                  g / peak["value"], at_most=False, why=unreliable(**{label: st}))


def targets(r: dict) -> dict:
    """Every target of BARS, each {bar, measured, ratio, limit, met}."""
    out = {"full_vs_eager": ratio_target(r, "full_vs_eager", EQSDK, EAGER),
           "full_vs_compile_bf16": ratio_target(r, "full_vs_compile_bf16", EQSDK, COMPILE_BF16)}
    st = row(r, 1, EQSDK)
    out["p99"] = target("p99", "not measured", None, why="a row was not measured") if st is None else \
        target("p99", f"p99 {st['p99_ms']:.3f} ms / median {st['median_ms']:.3f} ms = "
                      f"{st['p99_ms'] / st['median_ms']:.2f}", st["p99_ms"] / st["median_ms"],
               why=unreliable(**{EQSDK: st}))
    out["reduced_vs_bf16_peak"] = peak_target(r, "reduced_vs_bf16_peak", REDUCED, "bf16")
    out["exact_vs_fp32_peak"] = peak_target(r, "exact_vs_fp32_peak", EXACT, "fp32")
    out["drive_vs_full"] = ratio_target(r, "drive_vs_full", DRIVE, EQSDK)
    out["drive_reader_vs_full"] = ratio_target(r, "drive_reader_vs_full", DRIVE_READER, EQSDK)
    section = r.get("openvino", r["ort"])  # the backend of the EQSDK row where it ran
    frac = section["overhead_batch1"]["sdk_fraction"]
    out["sdk_overhead"] = target("sdk_overhead", f"{frac:.1%} of a one-call render "
                                 f"({section['environment']['backend'].split(' (')[0]})", frac)
    return out


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def rows_table(r: dict) -> list[str]:
    """One line per row and batch: median, p99, renders/s, rate and share of its peak, rounds."""
    lines = ["| batch | row | median ms | p99 ms | renders/s | G(FL)OP/s | % of its peak | runs | "
             "round spread | |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for batch, rs in r["rows"].items():
        for label, st in rs.items():
            g = rate(r, int(batch), st)
            peak = r["peak"]["peak"][st["precision"]]["value"]
            flag = ("unreliable, not scored" if not st["reliable"] else
                    "above the measured peak" if st.get("above_peak") else "")
            lines.append(f"| {batch} | {label} | {st['median_ms']:.3f} | {st['p99_ms']:.3f} | "
                         f"{st['renders_per_s']:,.0f} | {g:.1f} | {g / peak:.0%} {st['precision']} | {st['runs']} | "
                         f"{st['spread']:.0%} | {flag} |")
        for label, why in r["not_measured"].get(batch, {}).items():
            lines.append(f"| {batch} | {label} | – | – | – | – | – | – | – | not measured: {why} |")
    return lines


def peaks_lines(r: dict) -> list[str]:
    p = r["peak"]
    lines = [f"Measured peaks: products of {p['n']}×{p['n']} matrices on {p['threads']} threads, "
             f"{p['trials']} trials of {p['calls_per_trial']} products per kernel taken in turns; each "
             "kernel's figure is its median trial, a precision's peak its best kernel.", "",
             "| kernel | median G(FL)OP/s | min–max |", "|---|---:|---:|"]
    for k, st in p["kernels"].items():
        lines.append(f"| {k} | {st['median']:.1f} | {st['min']:.1f}–{st['max']:.1f} |")
    for k in p.get("not_measured", []):
        lines.append(f"| {k} | not measured | |")
    lines.append("")
    for precision, e in p["peak"].items():
        if e["raised_by"]:
            lines.append(f"- {precision} peak: **{e['value']:.1f}**, raised from {e['measured']:.1f} "
                         f"({e['source']}) to the rate of the row {e['raised_by']}, which ran faster than "
                         "the measured peak: the kernels did not reach this machine's peak.")
        else:
            lines.append(f"- {precision} peak: **{e['value']:.1f}** ({e['source']}).")
    return lines


def compile_lines(r: dict) -> list[str]:
    lines = []
    for key, c in r.get("compile", {}).items():
        lines.append(f"- {key}: mode {c['mode']}, freezing, dynamic=False, fullgraph=True, "
                     f"{c['compile_s']:.1f} s to compile; dynamo: {c['unique_graphs']} graph(s), "
                     f"{c['graph_breaks']} graph breaks, {c['recompiles']} recompiles.")
    return lines


def budget_note(settings: dict) -> str:
    if not settings.get("budget_s"):
        return ""
    return (f"; a row slower than that in {settings['budget_s']:g} s gets as many runs as fit (at "
            "least 20, column runs) after a tenth as many warm-up runs")


def bench_table(r: dict, section: str = "ort") -> list[str]:
    """eqsdk.bench's per-path and per-graph figures of one backend's section."""
    lines = ["| batch | path | runs | median ms | p99 ms | renders/s | GFLOP/s |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for batch, rs in r[section]["batches"].items():
        for path, st in rs.items():
            g = gflops(r, st["median_ms"], int(batch), path)
            rps = fmt(st.get("renders_per_s"), ",.0f") if "renders_per_s" in st else ""
            lines.append(f"| {batch} | {path} | {st['runs']} | {st['median_ms']:.3f} | {st['p99_ms']:.3f} | "
                         f"{rps} | {g:.1f} |")
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
    i8, peak = r["int8"], r["peak"]["peak"]["fp32"]["value"]
    lines = ["| batch | path | int8 median ms | int8 p99 ms | fp32 median ms | int8 / fp32 | "
             "int8 G(FL)OP/s | % of FP32 peak |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for batch in r["settings"]["batches"]:
        for path in (p for p in PATHS + GRAPH_ROWS if p in i8["ort"]["batches"][str(batch)]):
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
    env, ort, fl, st = r["environment"], r["ort"], r["flops"], r["settings"]
    cpu = env["cpu"]
    lines = [f"# Latency suite: {ort['model']}", "",
             f"`{r['command']}` — {r['started']}", "",
             f"{cpu['model']} (family {cpu.get('family')}, model {cpu.get('model_number')}), "
             f"{cpu['cores']} cores; flags: {', '.join(cpu['flags'])}; absent: "
             f"{', '.join(cpu.get('missing_flags', []))}. Load average (1, 5, 15 min) at start "
             + ", ".join(f"{x:.2f}" for x in env["load_average_at_start"]) + "; at end "
             + ", ".join(f"{x:.2f}" for x in env["load_average_at_end"]) + ".",
             f"onnxruntime {env['onnxruntime']}, openvino {env.get('openvino') or '–'}, torch {env['torch']}, "
             f"numpy {env['numpy']}, python {env['python']}. Threads: ONNX Runtime {env['threads']['onnxruntime']}; "
             f"OpenVINO {env['threads']['openvino']}; PyTorch {env['threads']['torch']}, under torch.inference_mode.",
             f"Rows: {st['rounds']} interleaved rounds of about {st['round_s']:g} s per row (at most {st['runs']} "
             f"runs a round) after {st['warmup']} warm-up runs; median of the round medians, p99 over all runs; "
             f"a row whose round medians spread by more than {st['spread_limit']:.0%} of their median is "
             "unreliable and not scored." + (" **Quick mode: a rehearsal, not figures.**" if st.get("quick") else ""),
             ""]
    if env["load_average_at_start"][0] > BUSY_LOAD:
        lines += [f"**Warning: the machine was busy (1-minute load average {env['load_average_at_start'][0]:.2f} "
                  "before the suite started): these figures are not representative.**", ""]
    lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in r["targets"].values():
        met = {True: "**met**", False: "**not met**", None: "not scored"}[t["met"]]
        lines.append(f"| {t['bar']} | {t['measured']} | {met} |")
    p = r["parity"]
    lines += ["", "## Full render: every way to run the model", ""] + rows_table(r)
    lines += ["", f"Same model: the PyTorch model is rebuilt from the bundle's graphs "
                  f"({p['weights']['from_initializers']} tensors from initializers, "
                  f"{len(p['weights']['from_graph'])} GroupNorm parameters from the graph, "
                  f"{len(p['weights']['zero_bias'])} all-zero biases) and renders within "
                  f"{p['max_abs_diff_render']:.1e} of eqsdk; the merged ONNX model "
                  f"({p['merged_nodes']} nodes: the bundle's f_c, t_z, f_b and g in one graph, "
                  f"benchmarks/merged_graph.py) within {p['merged_max_abs_diff_render']:.1e} "
                  f"(tolerance {p['tolerance']:.0e}: {'passed' if p['passed'] else 'FAILED'}).", ""]
    lines += ["torch.compile (inductor) with freezing, one compiled module per batch size, compile time "
              "not in the figures; while the rows are timed dynamo's error_on_recompile is set, so a "
              "recompile fails the run instead of running eager:", ""] + (compile_lines(r) or ["- not run."])
    lines += ["", "## Peaks and FLOPs", ""] + peaks_lines(r)
    lines += ["", f"FLOPs: {fl['method']}. Per render: " +
              ", ".join(f"{k} {v / 1e6:.1f} MFLOP" for k, v in fl["per_render"].items()) + "."]
    for key in ("ort", "openvino"):
        if key not in r:
            continue
        sec = r[key]
        ov = sec["overhead_batch1"]
        lines += ["", f"## eqsdk bench: {sec['environment']['backend']}", "",
                  "Per path and graph; on OpenVINO the full and drive paths are one call each.", ""]
        lines += bench_table(r, key)
        lines += ["", f"Statistics over up to {st['runs']} timed runs after {st['warmup']} warm-up runs per "
                      "line (median, not mean)" + budget_note(st) + ". "
                      f"Loading {sec['session_creation_s'] * 1e3:.0f} ms, first call "
                      f"{sec['first_call_s'] * 1e3:.1f} ms; SDK overhead at batch 1 (one-call render of uint8 "
                      f"images minus its time in the runtime) {ov['sdk_fraction']:.1%}: end to end "
                      f"{ov['end_to_end']['median_ms']:.3f} ms median, runtime {ov['graphs']['median_ms']:.3f} ms."]
    if "motion_check" in r:
        lines += ["", "## A full render with the motion check", "",
                  "The rows above time the graphs as they are. The mnist bundle also checks T^Z's reading "
                  f"of each motion by rendering it turned by every {motion_check.STEP:g}° up to "
                  f"±{motion_check.SCAN:g}° (eqsdk.motion_check): {len(motion_check.turns())} more renders "
                  "through the warp and g per motion, in one batch. PyTorch batches them alike "
                  "(torch_reference.checked_full_render):", ""]
        lines += motion_check_table(r)
    if "int8" in r:
        int8 = ", ".join(r["int8"]["precision"]["int8"])
        lines += ["", f"## int8 (ONNX Runtime, QDQ static quantization of {int8})", "",
                  f"{r['int8']['precision']['method']}; kept fp32: " +
                  "; ".join(f"{g}: {', '.join(n)}" for g, n in r["int8"]["precision"]["fp32_nodes"].items()) +
                  ", and the graphs " + ", ".join(r["int8"]["precision"]["fp32"]) + ".", ""]
        lines += int8_table(r)
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    """Batch-1 median latency and batch-32 renders/s of every row, as horizontal bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(b, key, title) for b, key, title in (("1", "median_ms", "batch 1: median ms (lower is better)"),
                                                    ("32", "renders_per_s", "batch 32: renders/s (higher is better)"))
              if b in r["rows"]]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(7 * max(1, len(panels)), 4.5), squeeze=False)
    for ax, (b, key, title) in zip(axes[0], panels):
        labels = list(r["rows"][b])
        values = [r["rows"][b][k][key] for k in labels]
        colors = ["tab:blue" if k.startswith("eqsdk") else "tab:gray" for k in labels]
        ax.barh(labels, values, color=colors)
        for k, y in zip(labels, range(len(labels))):
            if not r["rows"][b][k]["reliable"]:
                ax.text(0, y, "  unreliable", va="center", fontsize=7, color="red")
        ax.invert_yaxis()
        if key == "median_ms":  # rows differ by orders of magnitude on busy cores
            ax.set_xscale("log")
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"{r['ort']['model']} full render on {r['environment']['cpu']['model']}, "
                 f"{r['environment']['cpu']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
