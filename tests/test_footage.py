"""`eqsdk train` and `eqsdk export` on footage, end to end: a folder of real MP4 files in, a bundle
out that `eqsdk animate --model` renders with; the same from the installed wheel, in another
folder, and under torchrun; bad input exits 2 with one line."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eqsdk
from eqsdk.cli import main
from tests.test_videos import sprite_clip, write_video

pytest.importorskip("av")
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "32", "--batch", "8", "--sample-every", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    for k in range(3):
        write_video(d / f"walk{k}.mp4", sprite_clip(12, seed=k))
    return d


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQSDK_VIDEO_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
def test_train_resume_export_and_animate(footage, tmp_path, capsys):
    run, bundle = tmp_path / "runs" / "mine", tmp_path / "bundles" / "mine"
    assert main(["train", str(footage), "--out", str(run), "--steps", "2", *TINY]) == 0
    err = capsys.readouterr().err
    assert "3 usable clips" in err and "next: eqsdk export" in err
    for name in ("last.pt", "samples.png", "preview.gif", "log.jsonl"):
        assert (run / name).stat().st_size > 0
    assert main(["train", str(footage), "--out", str(run), "--steps", "3", *TINY]) == 0  # resumes
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 3

    assert main(["export", str(run), "--out", str(bundle), "--eval-footage", str(footage)]) == 0
    assert {"model-card.md", "transfer.png"} <= {p.name for p in bundle.iterdir()}
    assert (run / "eval" / "metrics.json").is_file() and "Reconstruction" in (bundle / "model-card.md").read_text()
    r = eqsdk.load(bundle)
    assert r.manifest.evaluation["kind"] == "footage" and len(r.manifest.evaluation["val_videos"]) == 3
    assert r.image_size == 32 and r.manifest.training.command.startswith("eqsdk train ")
    assert r.manifest.training.train_config["dataset"] == f"videos:{footage.resolve()}"
    frame = tmp_path / "char.png"
    Image.fromarray(sprite_clip(1, seed=5)[0]).save(frame)
    out = tmp_path / "out.gif"
    assert main(["animate", "--model", str(bundle), "--char", str(frame), "--drive", str(footage / "walk0.mp4"),
                 "-o", str(out)]) == 0
    frames, _ = eqsdk.read_clip(out)
    assert len(frames) == 12 and frames[0].shape == (32, 32, 3)
    assert main(["export", str(run), "--out", str(bundle)]) == 2  # exists
    assert "--force" in capsys.readouterr().err


@pytest.mark.slow
def test_size_128_trains_exports_and_renders_with_the_same_four_graphs(footage, tmp_path):
    run, bundle = tmp_path / "run128", tmp_path / "bundle128"
    assert main(["train", str(footage), "--out", str(run), "--steps", "1", "--size", "128", "--batch", "2",
                 "--sample-every", "0", "--threads", "1"]) == 0
    assert main(["export", str(run), "--out", str(bundle)]) == 0
    for backend in ("cpu", "openvino"):
        r = eqsdk.load(bundle, backend=backend, precision="fp32")
        assert r.image_size == 128 and r.manifest.config["image_size"] == 128
        z = r.encode_character(sprite_clip(1, seed=2)[0])  # resized from 64 px, with a warning
        assert z.data.shape[-2:] == (32, 32)  # features at a quarter of the image size
        frames = r.animate(sprite_clip(1, seed=3)[0], sprite_clip(1, seed=4)[0], list(sprite_clip(4, seed=1)))
        assert len(frames) == 4 and frames[0].shape == (128, 128, 3)
    assert {p.stem for p in bundle.glob("*.onnx")} == {"f_c", "f_b", "t_z", "g", "warp"}


@pytest.mark.parametrize("args, message", [
    (["--steps", "1", "--crop", "1,2,3"], "expected x,y,w,h"),
    (["--steps", "1", "--size", "48"], "'48' is not one of"),
    ([], "no budget"),
    (["--steps", "1", "--out-of-place"], "No such option"),
])
def test_bad_options_exit_2_with_one_line(footage, tmp_path, capsys, args, message):
    argv = ["train", str(footage), "--out", str(tmp_path / "run"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_folder_with_no_usable_clip_exits_2_naming_what_it_found(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "notes.txt").write_text("not a video")
    assert main(["train", str(tmp_path / "clips"), "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "no usable clip" in err and "notes.txt" in err and err.count("\n") == 1


def test_export_of_a_missing_run_exits_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "b")]) == 2
    assert "nothing" in capsys.readouterr().err and not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp)], check=True, capture_output=True)
    (built,) = tmp.glob("eqsdk-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel, installed (without dependencies: those of this environment serve) into a folder
    that is put first on PYTHONPATH, away from the checkout."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    return target


def run_installed(installed, cwd, *argv, launcher=()):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *launcher, str(installed / "bin" / "eqsdk"), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_installed_wheel_trains_under_torchrun_and_exports_from_any_folder(installed, footage, tmp_path):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    r = run_installed(installed, cwd, "train", str(footage), "--out", "runs/ddp", "--steps", "2", *TINY,
                      launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    assert r.returncode == 0, r.stderr[-2000:]
    log = [json.loads(line) for line in (cwd / "runs" / "ddp" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["processes"] == 2 and log[-1]["ranks_max_abs_diff"] == 0.0
    r = run_installed(installed, cwd, "export", "runs/ddp", "--out", "bundles/ddp")
    assert r.returncode == 0, r.stderr[-2000:]
    check = subprocess.run([sys.executable, "-c", "import eqsdk_train.footage, sys; "
                            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('train', 'export')))"],
                           cwd=cwd, env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "[]", check.stderr
    assert eqsdk.load(cwd / "bundles" / "ddp").image_size == 32


@pytest.mark.slow
def test_without_torch_train_and_export_say_what_to_install(wheel, footage, tmp_path):
    """A fresh virtual environment with the runtime alone (its dependencies from the package index)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for argv in (["train", str(footage), "--out", "run", "--steps", "1"], ["export", "run", "--out", "b"]):
        r = subprocess.run([str(venv / "bin" / "eqsdk"), *argv], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "need PyTorch" in r.stderr and "is missing" in r.stderr and "pip install 'eqsdk[train]'" in r.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "b").exists()
