"""The latency suite (benchmarks/suite.py) on the tiny random bundle, with tiny run counts: the
report is complete, PyTorch and the merged ONNX model render what eqsdk renders, and the
bookkeeping (peaks, unreliable rows, targets) is right. No timing assertions."""
import json
import time

import numpy as np
import pytest
import torch

from benchmarks import flops, merged_graph, report as suite_report, suite, torch_reference
from eqsdk.bench import time_calls
from train.checkpoint import load_checkpoint


def test_model_from_bundle_is_the_checkpoint(tiny_bundle, tiny_checkpoint):
    model, found = torch_reference.model_from_bundle(tiny_bundle[0])
    want = load_checkpoint(tiny_checkpoint)[0].state_dict()
    got = model.state_dict()
    assert set(got) == set(want)
    assert found["from_graph"] == [f"t_z.features.{i}.{p}" for i in (1, 4, 7) for p in ("weight", "bias")]
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)


def test_model_from_the_shipped_bundle_renders_what_eqsdk_renders():
    import eqsdk
    from eqsdk.bundle import bundle_dir

    # its symmetric T^Z runs the network twice, so the t_z graph holds each GroupNorm twice
    model, found = torch_reference.model_from_bundle(bundle_dir("mnist"))
    assert model.cfg.tz_symmetric and len(found["from_graph"]) == 6
    assert torch_reference.parity(model, eqsdk.load("mnist")) <= 1e-4


def test_a_time_budget_gives_slow_calls_fewer_runs_but_never_too_few():
    calls = []
    slow = lambda: (calls.append(1), time.sleep(0.01))  # noqa: E731
    st = time_calls(slow, runs=200, warmup=20, budget_s=0.1, min_runs=3)
    assert 3 <= st["runs"] <= 10 and len(calls) < 20
    assert time_calls(lambda: None, runs=50, warmup=1, budget_s=0.1)["runs"] == 50  # fast: all runs
    assert time_calls(slow, runs=30, warmup=0, budget_s=0)["runs"] == 30  # 0: no budget


@pytest.fixture(scope="module")
def report(tiny_bundle, tmp_path_factory):
    bundle = tiny_bundle[0]
    out = tmp_path_factory.mktemp("suite")
    suite.main(["--model", str(bundle), "--out", str(out), "--runs", "3", "--warmup", "1",
                "--batch", "1", "2", "--rounds", "2", "--round-s", "0.001", "--calibration", "32",
                "--examples", "20", "--peak-n", "128", "--peak-trials", "2", "--skip-compile"])
    return out


@pytest.mark.data("mnist")
def test_suite_writes_its_three_files(report):
    assert {p.name for p in report.iterdir()} >= {"results.json", "results.md", "latency.png"}
    assert (report / "latency.png").stat().st_size > 1000
    assert "## Targets" in (report / "results.md").read_text()
    assert "## A full render with the motion check" in (report / "results.md").read_text()


@pytest.mark.data("mnist")
def test_results_json_is_complete(report):
    r = json.loads((report / "results.json").read_text())
    assert r["parity"]["passed"] and r["parity"]["max_abs_diff_render"] <= 1e-4
    assert r["parity"]["merged_max_abs_diff_render"] <= 1e-5
    for section in (r["ort"], r["int8"]["ort"]):
        assert set(section["batches"]) == {"1", "2"}
        for row in section["batches"].values():
            assert {"full", "motion", "background", "graph:f_c", "graph:g"} <= set(row)
            for st in row.values():
                assert st["runs"] == 3 and 0 < st["min_ms"] <= st["median_ms"] <= st["max_ms"]
    assert set(r["rows"]) == {"1", "2"}
    for batch, rows in r["rows"].items():
        measured = set(rows) | set(r["not_measured"][batch])
        assert measured == set(suite.ROWS)
        assert {suite_report.EQSDK_CPU, suite_report.EQSDK, suite_report.DRIVE, suite_report.DRIVE_READER,
                "PyTorch eager fp32",
                "one merged ONNX model, ORT spinning on"} <= set(rows)
        assert r["not_measured"][batch]["torch.compile fp32"] == "--skip-compile"
        for st in rows.values():
            assert len(st["round_medians_ms"]) == 2 and st["runs"] >= 6 and st["median_ms"] > 0
    assert set(r["targets"]) == set(suite_report.BARS)
    assert r["targets"]["exact_vs_fp32_peak"]["met"] is None  # batch 32 was not run
    assert r["targets"]["full_vs_compile_bf16"]["met"] is None  # nor torch.compile
    assert set(r["peak"]["peak"]) == {"fp32", "bf16", "int8"} and r["peak"]["peak"]["fp32"]["value"] > 0
    assert r["command"].startswith("python -m benchmarks.suite")
    assert len(r["environment"]["load_average_at_start"]) == len(r["environment"]["load_average_at_end"]) == 3
    assert r["ort"]["check_motion"] is False and r["int8"]["ort"]["check_motion"] is False
    for row in r["motion_check"].values():  # full renders with the motion check, both frameworks
        assert row["ort"]["runs"] == row["torch_eager"]["runs"] == 3


@pytest.mark.data("mnist")
def test_flops_of_a_full_render_are_its_graphs(report):
    r = json.loads((report / "results.json").read_text())
    g, per_render = r["flops"]["per_graph_batch1"], r["flops"]["per_render"]
    assert per_render["full"] == 3 * g["f_c"] + g["f_b"] + g["t_z"] + g["g"]
    assert per_render["drive_reader"] == g["reader"] + g["warp"] + g["g"] and g["reader"] > 0
    # The tiny model's f_c: a 4x4 stride-2 conv 3 -> 8 channels on 64x64 -> 32x32, among others.
    assert g["f_c"] > 2 * 32 * 32 * 8 * 3 * 4 * 4


@pytest.mark.data("mnist")
def test_int8_bundle_runs_integer_kernels_and_its_cost_is_measured(report):
    r = json.loads((report / "results.json").read_text())["int8"]
    assert set(r["kernels"]) == set(r["precision"]["int8"]) == {"f_c", "f_b"}  # g stays fp32
    assert all(k["integer_kernels"] > 0 for k in r["kernels"].values())
    for task in ("transformation", "background"):
        q = r["quality"][task]
        assert q["int8_vs_truth"]["n"] == 20 and np.isfinite(q["relative_cost"])
        assert q["int8_vs_fp32"]["mean"] > 0  # int8 does change the render


@pytest.mark.data("mnist")
def test_quantize_writes_an_int8_bundle_that_eqsdk_loads(tiny_bundle, tmp_path, capsys):
    from benchmarks import quantize

    import eqsdk

    out = tmp_path / "int8"
    quantize.main([str(tiny_bundle[0]), "--out", str(out), "--calibration", "32", "--examples", "20"])
    r = eqsdk.load(out)
    assert "int8 (f_c, f_b)" in r.backend.describe()
    assert r.manifest.evaluation["int8_quality"]["transformation"]["int8_vs_truth"]["n"] == 20
    x = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert r.render(char=x, bg=x, anim=(x, x)).shape == (64, 64, 3)
    assert "transformation: MSE" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # never over an existing directory
        quantize.main([str(tiny_bundle[0]), "--out", str(out)])


@pytest.mark.parametrize("bundle", ["tiny", "mnist"])
def test_the_merged_model_renders_what_eqsdk_renders(bundle, tiny_bundle):
    import eqsdk
    from eqsdk.bundle import bundle_dir

    directory = tiny_bundle[0] if bundle == "tiny" else bundle_dir("mnist")
    model = merged_graph.full_render_model(directory)
    session = merged_graph.ort_session(model, threads=1, spinning=False)
    renderer = eqsdk.load(directory, check_motion=False)
    x = np.random.default_rng(0).random((4, 3, 3, renderer.image_size, renderer.image_size), dtype=np.float32)
    got = session.run(None, dict(zip(merged_graph.INPUTS, x)))[0]
    assert got.shape == (3, 3, renderer.image_size, renderer.image_size)
    np.testing.assert_allclose(got, renderer.render_arrays(*x), rtol=0, atol=1e-5)
    # one graph: the bundle's four graphs once each, joined
    assert {i.name for i in model.graph.input} == set(merged_graph.INPUTS)


def test_the_batched_checked_reference_is_the_models_checked_render():
    from eqsdk.bundle import bundle_dir

    model, _ = torch_reference.model_from_bundle(bundle_dir("mnist"))
    x = torch.rand(4, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(torch_reference.checked_full_render(model, *x), model(*x, checked=True),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(torch_reference.FullRender(model)(*x), model(*x), rtol=0, atol=1e-5)


def fake_peaks(fp32=100.0, bf16=200.0):
    return {"peak": {"fp32": {"value": fp32, "source": "torch.matmul fp32", "raised_by": None},
                     "bf16": {"value": bf16, "source": "torch.matmul bf16", "raised_by": None},
                     "int8": {"value": 400.0, "source": "onnxruntime MatMulInteger u8xs8", "raised_by": None}}}


def test_a_row_above_its_peak_raises_the_peak_and_is_named():
    peak = fake_peaks()
    above = flops.raise_peaks(peak, {"a": ("fp32", 90.0), "b": ("fp32", 120.0), "c": ("fp32", 150.0),
                                     "d": ("bf16", 150.0)})
    assert above == ["b", "c"]  # both ran faster than the measured 100
    assert peak["peak"]["fp32"] == {"value": 150.0, "measured": 100.0, "source": "torch.matmul fp32",
                                    "raised_by": "c"}
    assert peak["peak"]["bf16"]["raised_by"] is None and peak["peak"]["bf16"]["value"] == 200.0


def test_rounds_that_disagree_make_a_row_unreliable():
    steady = [np.full(10, 0.010), np.full(10, 0.0105), np.full(10, 0.0102)]
    st = suite.summarize(steady, batch=2, spread_limit=0.15)
    assert st["reliable"] and st["median_ms"] == pytest.approx(10.2) and st["runs"] == 30
    assert st["renders_per_s"] == pytest.approx(2 / 0.0102)
    noisy = steady + [np.full(10, 0.020)]  # one round at twice the time: load came and went
    st = suite.summarize(noisy, batch=2, spread_limit=0.15)
    assert not st["reliable"] and st["spread"] == pytest.approx(1.0, rel=0.05)


def fake_results(eqsdk_ms=2.0, eager_ms=10.0, spread=0.05):
    def row(ms, precision="fp32", path="full", batch=1, p99=None, sp=0.05):
        return {"median_ms": ms, "p99_ms": p99 or 1.2 * ms, "precision": precision, "path": path,
                "renders_per_s": batch / ms * 1e3, "spread": sp, "reliable": sp <= 0.15, "runs": 10}

    return {"flops": {"per_render": {"full": 1e8, "drive": 4e7}},
            "peak": fake_peaks(fp32=100.0, bf16=200.0),
            "ort": {"overhead_batch1": {"sdk_fraction": 0.05}, "environment": {"backend": "ONNX Runtime (fake)"}},
            "rows": {"1": {suite_report.EQSDK: row(eqsdk_ms, "bf16", sp=spread), suite_report.EAGER: row(eager_ms),
                           suite_report.COMPILE_BF16: row(4.0, "bf16"),
                           suite_report.DRIVE: row(0.8, "bf16", path="drive")},
                     # 32 renders of 0.1 GFLOP in 40 ms: 80 GFLOP/s; bf16 in 20 ms: 160
                     "32": {suite_report.EQSDK_CPU: row(40.0, batch=32),
                            suite_report.EQSDK: row(20.0, "bf16", batch=32)}}}


def test_targets_from_a_small_results_dict():
    r = fake_results()
    assert suite_report.check_peaks(r) == []
    t = suite_report.targets(r)
    assert set(t) == set(suite_report.BARS)
    assert t["full_vs_eager"]["ratio"] == pytest.approx(0.2) and t["full_vs_eager"]["met"] is True
    assert t["full_vs_compile_bf16"]["ratio"] == pytest.approx(0.5) and t["full_vs_compile_bf16"]["met"] is True
    assert t["p99"]["ratio"] == pytest.approx(1.2) and t["p99"]["met"] is True
    assert t["exact_vs_fp32_peak"]["ratio"] == pytest.approx(0.8) and t["exact_vs_fp32_peak"]["met"] is True
    assert t["reduced_vs_bf16_peak"]["ratio"] == pytest.approx(0.8) and t["reduced_vs_bf16_peak"]["met"] is False
    assert t["drive_vs_full"]["ratio"] == pytest.approx(0.4) and t["drive_vs_full"]["met"] is True
    assert t["sdk_overhead"]["met"] is True
    slow = suite_report.targets(fake_results(eqsdk_ms=5.0))
    assert slow["full_vs_eager"]["met"] is False and slow["full_vs_compile_bf16"]["met"] is False


def test_an_unreliable_row_is_not_scored_and_a_row_above_peak_raises_it():
    t = suite_report.targets(fake_results(spread=0.5))
    assert t["full_vs_eager"]["met"] is None and "unreliable" in t["full_vs_eager"]["measured"]
    assert t["drive_vs_full"]["met"] is None  # its denominator is the unreliable row
    r = fake_results()
    r["rows"]["32"][suite_report.EQSDK_CPU]["median_ms"] = 20.0  # 160 GFLOP/s > the 100 measured
    above = suite_report.check_peaks(r)
    assert [(a["batch"], a["row"]) for a in above] == [(32, suite_report.EQSDK_CPU)]
    assert r["peak"]["peak"]["fp32"]["value"] == pytest.approx(160.0)
    assert r["rows"]["32"][suite_report.EQSDK_CPU]["above_peak"]
    assert suite_report.targets(r)["exact_vs_fp32_peak"]["ratio"] == pytest.approx(1.0)  # never above 100%
