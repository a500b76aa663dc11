"""The latency suite (benchmarks/suite.py) on the tiny random bundle, with tiny run counts: the
report is complete and PyTorch renders what eqsdk renders. No timing assertions."""
import json
import time

import numpy as np
import pytest
import torch

from benchmarks import suite, torch_reference
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
                "--batch", "1", "2", "--calibration", "32", "--examples", "20", "--peak-runs", "1",
                "--skip-compile"])
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
    for section in (r["ort"], r["torch_eager"], r["int8"]["ort"]):
        assert set(section["batches"]) == {"1", "2"}
        for row in section["batches"].values():
            assert {"full", "motion", "background", "graph:f_c", "graph:g"} <= set(row)
            for st in row.values():
                assert st["runs"] == 3 and 0 < st["min_ms"] <= st["median_ms"] <= st["max_ms"]
    assert set(r["targets"]) == {"full_vs_pytorch", "motion_vs_full", "throughput_vs_peak",
                                 "reduced_precision_vs_peak", "sdk_overhead"}
    assert r["targets"]["throughput_vs_peak"]["met"] is None  # batch 32 was not run
    assert r["peak"]["fp32_peak"] > 0 and r["command"].startswith("python -m benchmarks.suite")
    assert r["ort"]["check_motion"] is False and r["int8"]["ort"]["check_motion"] is False
    for row in r["motion_check"].values():  # full renders with the motion check, both frameworks
        assert row["ort"]["runs"] == row["torch_eager"]["runs"] == 3


@pytest.mark.data("mnist")
def test_flops_of_a_full_render_are_its_graphs(report):
    r = json.loads((report / "results.json").read_text())
    g, per_render = r["flops"]["per_graph_batch1"], r["flops"]["per_render"]
    assert per_render["full"] == 3 * g["f_c"] + g["f_b"] + g["t_z"] + g["g"]
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
