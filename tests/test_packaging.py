"""A non-editable install carries every module of eqsdk, of the training and export code (as\neqsdk_train and eqsdk_export, their imports renamed) and the bundled models as package data."""
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from eqsdk.bundle import MANIFEST, MODELS, bundle_dir, read_manifest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_AS = {"eqsdk": "eqsdk", "train": "eqsdk_train", "export": "eqsdk_export"}  # folder -> package (setup.py)


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
        for file in [MANIFEST, *(e.file for e in read_manifest(bundle_dir(model)).graphs.values())]:
            assert f"eqsdk/models/{model}/{file}" in names
    assert not any(n.startswith(("train/", "export/", "tests/")) for n in names)
    for folder, shipped in SHIPPED_AS.items():  # subpackages too: a forgotten one breaks every install
        package = ROOT / folder
        for module in package.rglob("*.py"):
            name = f"{shipped}/{module.relative_to(package).as_posix()}"
            assert name in names
            source = zipfile.ZipFile(wheel).read(name).decode()
            assert not re.search(r"^\s*(from|import) (train|export)\b", source, re.MULTILINE), name
