"""A non-editable install carries the bundled model as package data."""
import subprocess
import sys
import zipfile
from pathlib import Path

from eqsdk.bundle import MANIFEST, MODELS
from eqsdk.graphs import GRAPHS

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_every_bundled_model(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("eqsdk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in MODELS:
        for file in [MANIFEST, *(spec.file for spec in GRAPHS.values())]:
            assert f"eqsdk/models/{model}/{file}" in names
    assert not any(n.startswith(("train/", "export/", "tests/")) for n in names)
