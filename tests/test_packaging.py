"""A non-editable install carries every module of eqsdk and the bundled model as package data."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from eqsdk.bundle import MANIFEST, MODELS
from eqsdk.graphs import GRAPHS

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_every_bundled_model(tmp_path):
    # From a clean copy, as on a fresh machine: a stale egg-info or build/ here can hide a
    # package that pyproject.toml forgot.
    src = shutil.copytree(ROOT, tmp_path / "src", ignore=shutil.ignore_patterns(
        ".*", "*.egg-info", "build", "runs", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("eqsdk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in MODELS:
        for file in [MANIFEST, *(spec.file for spec in GRAPHS.values())]:
            assert f"eqsdk/models/{model}/{file}" in names
    assert not any(n.startswith(("train/", "export/", "tests/")) for n in names)
    package = ROOT / "eqsdk"
    for module in package.rglob("*.py"):  # subpackages too: a forgotten one breaks every install
        assert f"eqsdk/{module.relative_to(package).as_posix()}" in names
