"""`eqsdk render` end to end on the bundled model, and its answers to bad input."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eqsdk.bundle import bundle_dir
from eqsdk.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = json.loads((EXAMPLES / "cases.json").read_text())


def args_for(case: str, out: Path, *extra: str) -> list[str]:
    d = EXAMPLES / case
    return ["render", "--char", str(d / "char.png"), "--bg", str(d / "bg.png"), "--anim",
            str(d / "anim_start.png"), str(d / "anim_end.png"), "-o", str(out), *extra]


def mse(a: Path, b: Path) -> float:
    x, y = (np.asarray(Image.open(p).convert("RGB"), np.float64) / 255 for p in (a, b))
    return float(np.square(x - y).mean())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bundled_model_renders_the_examples_close_to_the_truth(case, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert main(args_for(case["name"], out)) == 0
    assert Image.open(out).size == (64, 64)
    # The character's own frame, whose background is the wrong one, is far from the truth; the
    # render puts the character on the right background ...
    truth = EXAMPLES / case["name"] / "expected.png"
    assert mse(out, truth) < 0.25 * mse(EXAMPLES / case["name"] / "char.png", truth)
    # ... and moves it: the same render with no motion (START START) is further from the truth.
    still = tmp_path / "still.png"
    d = EXAMPLES / case["name"]
    assert main(args_for(case["name"], still)[:6] + [str(d / "anim_start.png")] * 2 + ["-o", str(still)]) == 0
    assert mse(out, truth) < mse(still, truth)
    assert "wrote" in capsys.readouterr().err


def test_the_installed_command_runs(tmp_path):
    beside = Path(sys.executable).parent / "eqsdk"  # the venv's scripts, even when not on PATH
    exe = str(beside) if beside.exists() else shutil.which("eqsdk")
    if exe is None:
        pytest.skip("the eqsdk command is not installed")
    out = tmp_path / "o.png"
    result = subprocess.run([exe, *args_for("case1", out, "--scale", "4")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (256, 256)


def test_resize_is_reported(tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.open(EXAMPLES / "case1" / "bg.png").resize((128, 96)).save(big)
    args = args_for("case1", tmp_path / "o.png")
    args[args.index("--bg") + 1] = str(big)
    assert main(args) == 0
    assert "resized from 128x96 to 64x64" in capsys.readouterr().err


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "text.png").write_text("not an image")
    (tmp / "exists.png").write_bytes(b"keep me")
    out = tmp / "out.png"

    def swap(flag, value):
        a = args_for("case1", out)
        a[a.index(flag) + 1] = value
        return a

    one_anim = args_for("case1", out)
    del one_anim[one_anim.index("--anim") + 2]
    three_anim = args_for("case1", out)
    three_anim.insert(three_anim.index("--anim") + 1, three_anim[three_anim.index("--anim") + 1])
    return {
        "missing": (swap("--char", str(tmp / "nope.png")), "no such file"),
        "not an image": (swap("--bg", str(tmp / "text.png")), "not an image"),
        "directory": (swap("--char", str(tmp)), "is a directory"),
        "one anim": (one_anim, "expected 2 images (START END), got 1"),
        "three anim": (three_anim, "expected 2 images (START END), got 3"),
        "unknown model": (args_for("case1", out, "--model", "nope"), "unknown model 'nope'"),
        "existing output": (swap("-o", str(tmp / "exists.png")), "exists; pass --force"),
        "bad extension": (swap("-o", str(tmp / "out.xyz")), "unknown image extension"),
        "missing option": (args_for("case1", out)[:-2], "missing -o (or give --batch JOBS)"),
    }


@pytest.mark.parametrize("case", [
    "missing", "not an image", "directory", "one anim", "three anim", "unknown model",
    "existing output", "bad extension", "missing option"])
def test_bad_input_is_one_line_exit_2_and_no_output(case, tmp_path, capsys):
    args, message = bad_inputs(tmp_path)[case]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.xyz").exists()
    assert (tmp_path / "exists.png").read_bytes() == b"keep me"


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "eqsdk", "render", "--char", str(tmp_path / "x.png"),
                             "--bg", "b", "--anim", "p", "q", "-o", str(tmp_path / "o.png")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("eqsdk: error: char") and "Traceback" not in result.stderr


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "eqsdk, version" in capsys.readouterr().out
    assert main(["render", "--help"]) == 0
    assert "eqsdk render --char a.png" in capsys.readouterr().out


def write_jobs(tmp_path: Path, suffix: str, outputs=("a.png", "b.png")) -> Path:
    for name in ("char", "bg", "anim_start", "anim_end"):
        shutil.copy(EXAMPLES / "case1" / f"{name}.png", tmp_path / f"{name}.png")
    rows = [{"char": "char.png", "bg": "bg.png", "anim_start": "anim_start.png",
             "anim_end": "anim_end.png", "output": o} for o in outputs]
    path = tmp_path / f"jobs{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("char,bg,anim_start,anim_end,output\n"
                        + "".join(",".join(r.values()) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_batch_renders_every_job_like_single_renders(suffix, tmp_path, capsys):
    jobs = write_jobs(tmp_path, suffix)
    assert main(["render", "--batch", str(jobs)]) == 0
    assert main(args_for("case1", tmp_path / "single.png")) == 0
    single = np.asarray(Image.open(tmp_path / "single.png"))
    for name in ("a.png", "b.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), single)
    assert "wrote 2 images" in capsys.readouterr().err


def test_batch_checks_every_job_before_rendering(tmp_path, capsys):
    jobs = write_jobs(tmp_path, ".csv", outputs=("a.png", "b.png"))
    (tmp_path / "b.png").write_bytes(b"keep me")
    assert main(["render", "--batch", str(jobs)]) == 2
    err = capsys.readouterr().err
    assert "jobs.csv, row 3: output" in err and "exists" in err and err.count("\n") == 1
    assert not (tmp_path / "a.png").exists() and (tmp_path / "b.png").read_bytes() == b"keep me"
    dup = write_jobs(tmp_path, ".json", outputs=("c.png", "c.png"))
    assert main(["render", "--batch", str(dup)]) == 2
    assert "also written by an earlier job" in capsys.readouterr().err
    assert main(["render", "--batch", str(jobs), "--char", "x.png"]) == 2
    assert "drop --char" in capsys.readouterr().err


def test_info_shows_the_bundle_and_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "model     mnist" in out and "warp" in out and "recipe    recipes/mnist.toml" in out
    assert "sha256 of every graph file" in out and "golden render: 2 fixed scenes" in out
    assert "cpu       available" in out and "tensorrt" in out
    manifest = json.loads((bundle_dir("mnist") / "manifest.json").read_text())
    stages, src = [manifest["training"]["command"]], manifest["training"].get("init_from")
    while src:
        stages, src = stages + [src["command"]], src.get("init_from")
    assert len(stages) > 1 and all(c in out for c in stages)  # every stage, not only the last
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backends"]["cpu"] is None and info["manifest"]["name"] == "mnist"


def test_verify_runs_and_a_tampered_bundle_fails(tmp_path, capsys):
    assert main(["verify"]) == 0
    assert "checked golden render" in capsys.readouterr().out
    bundle = shutil.copytree(Path(__import__("eqsdk").bundle.bundle_dir("mnist")), tmp_path / "m")
    (bundle / "g.onnx").write_bytes(b"not a graph")
    assert main(["verify", "--model", str(bundle)]) == 2
    assert "g.onnx" in capsys.readouterr().err


def test_bench_runs_and_writes_well_formed_json(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(tiny_bundle[0]), "--batch", "1,2", "--runs", "10",
                 "--json", str(out)]) == 0
    assert "| 1 | full |" in capsys.readouterr().out
    (report,) = json.loads(out.read_text())
    assert report["backend"] == "cpu" and set(report["batches"]) == {"1", "2"}
    row = report["batches"]["2"]
    assert {"full", "motion", "background", "graph:f_c", "graph:warp"} <= set(row)
    for st in row.values():
        assert 0 < st["min_ms"] <= st["median_ms"] <= st["p99_ms"] <= st["max_ms"]
    assert 0 <= report["overhead_batch1"]["sdk_fraction"] < 1
    assert main(["bench", "--batch", "0"]) == 2
