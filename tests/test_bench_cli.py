"""`eqsdk bench`: every argument checked before anything is measured, progress on stderr, the
--json report never replaced without --force."""
import json
import sys

import pytest

from eqsdk.cli import main


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "--batch '0': expected distinct batch sizes from 1 to 1024"),
    (["--batch", "1,,8"], "--batch '1,,8': expected"),
    (["--batch", "x"], "--batch 'x': expected"),
    (["--batch", "2000"], "--batch '2000': expected"),
    (["--batch", "8,8"], "--batch '8,8': expected distinct"),
    (["--backend", "gpu"], "--backend 'gpu': expected distinct names among cpu, cuda, tensorrt"),
    (["--backend", "cpu,cpu"], "--backend 'cpu,cpu': expected distinct"),
    (["--runs", "5"], "Invalid value for '--runs': 5 is not in the range 10<=x<=100000"),
    (["--threads", "0"], "Invalid value for '--threads': 0 is not in the range 1<=x<=256"),
    (["--model", "nope"], "unknown model 'nope'"),
])
def test_bad_arguments_are_refused_before_measuring(args, message, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "eqsdk bench: cpu [" not in err  # no measurement started


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_json_path_that_cannot_be_written(tmp_path, capsys):
    assert main(["bench", "--json", "/proc/eqsdk-bench.json"]) == 2
    assert "--json: output '/proc/eqsdk-bench.json': cannot write in '/proc'" in capsys.readouterr().err
    assert main(["bench", "--json", str(tmp_path)]) == 2
    assert "is a directory; expected a file name" in capsys.readouterr().err
    assert main(["bench", "--json", str(tmp_path / "no" / "b.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_unavailable_backend_is_refused_with_an_install_hint(capsys):
    from eqsdk.backends import available

    missing = [n for n, reason in available().items() if reason is not None]
    if not missing:
        pytest.skip("every backend is available here")
    assert main(["bench", "--backend", f"cpu,{missing[0]}"]) == 2
    err = capsys.readouterr().err
    assert f"backend {missing[0]!r} is not available" in err and "install:" in err
    assert "eqsdk bench: cpu [" not in err  # cpu, first in the list, was not measured either


def test_json_is_written_with_progress_and_kept_without_force(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--model", str(tiny_bundle[0]), "--batch", "1,2", "--runs", "10", "--json", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "eqsdk bench: cpu [0/23] batch 1, full" in err and "eqsdk bench: cpu [23/23] done" in err
    (report,) = json.loads(out.read_text())
    assert set(report["batches"]) == {"1", "2"} and report["budget_s"] == 1.5
    out.write_text("keep me")
    assert main(args) == 2
    assert "bench.json' exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main([*args, "--force", "--thorough"]) == 0
    (report,) = json.loads(out.read_text())
    assert report["budget_s"] is None and report["batches"]["2"]["full"]["runs"] == 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
