"""`eqsdk render --batch`: every job checked before the first render, errors naming the job's
row, the outputs of a run all or none, spreadsheet CSVs read as they are saved."""
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eqsdk
from eqsdk.cli import main, render_jobs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HEADER = "char,bg,anim_start,anim_end,output"


def job_dir(tmp_path: Path) -> Path:
    for name in ("char", "bg", "anim_start", "anim_end"):
        shutil.copy(EXAMPLES / "case1" / f"{name}.png", tmp_path / f"{name}.png")
    return tmp_path


def csv_jobs(tmp_path: Path, outputs, rows=None, name="jobs.csv", newline="\n", bom=False) -> Path:
    job_dir(tmp_path)
    rows = rows or [f"char.png,bg.png,anim_start.png,anim_end.png,{o}" for o in outputs]
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join([HEADER, *rows, ""]).encode())
    return path


def outputs_of(tmp_path: Path) -> set[str]:
    """Every file a run may have left: outputs and temporary files (dot files)."""
    inputs = {"char.png", "bg.png", "anim_start.png", "anim_end.png", "jobs.csv", "jobs.json", "keep.png"}
    return {p.name for p in tmp_path.rglob("*") if p.is_file() and p.name not in inputs}


def test_a_spreadsheet_csv_renders(tmp_path, capsys):
    # Saved by a spreadsheet: a byte-order mark, CRLF line ends, and blank rows at the end.
    jobs = csv_jobs(tmp_path, None, newline="\r\n", bom=True, rows=[
        "char.png,bg.png,anim_start.png,anim_end.png,a.png",
        "char.png,bg.png,anim_start.png,anim_end.png,b.png", ",,,,", ""])
    assert main(["render", "--batch", str(jobs)]) == 0
    assert main(["render", "--char", str(tmp_path / "char.png"), "--bg", str(tmp_path / "bg.png"),
                 "--anim", str(tmp_path / "anim_start.png"), str(tmp_path / "anim_end.png"),
                 "-o", str(tmp_path / "single.png")]) == 0
    single = np.asarray(Image.open(tmp_path / "single.png"))
    for name in ("a.png", "b.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), single)
    assert "wrote 2 images" in capsys.readouterr().err


def bad_jobs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Third rows that are wrong in one way each (rows 2 and 4 are fine), and the message."""
    (tmp / "text.png").write_text("not an image")
    png = (EXAMPLES / "case1" / "char.png").read_bytes()
    (tmp / "cut.png").write_bytes(png[:len(png) // 2])
    (tmp / "sub").mkdir()
    os.symlink(tmp / "sub", tmp / "link")
    (tmp / "keep.png").write_bytes(b"keep me")
    ok = "char.png,bg.png,anim_start.png,anim_end.png,"
    return {
        "missing input": ("nope.png,bg.png,anim_start.png,anim_end.png,o2.png", "char '.*nope.png': no such file"),
        "not an image": ("char.png,text.png,anim_start.png,anim_end.png,o2.png", "bg '.*text.png' is not an image"),
        "truncated image": ("char.png,bg.png,cut.png,anim_end.png,o2.png", "anim_start '.*cut.png'.*(corrupt|truncated|cannot read)"),
        "missing value": ("char.png,bg.png,anim_start.png,,o2.png", "anim_end got \"\"; each job needs"),
        "too many values": (ok + "o2.png,extra", "6 values; expected 5"),
        "same output": (ok + "sub/o1.png", "output '.*o1.png' is also written by an earlier job \\(jobs.csv, row 2\\)"),
        "same output after ..": (ok + "sub/../sub/o1.png", "is also written by an earlier job \\(jobs.csv, row 2\\)"),
        "same output through a link": (ok + "link/o1.png", "is also written by an earlier job \\(jobs.csv, row 2\\)"),
        "output over an input": (ok + "bg.png", "output '.*bg.png' is an input of this run"),
        "existing output": (ok + "keep.png", "exists; pass --force"),
        "unknown extension": (ok + "o2.xyz", "unknown image extension"),
        "no such directory": (ok + "nodir/o2.png", "does not exist"),
    }


BAD_KINDS = ["missing input", "not an image", "truncated image", "missing value", "too many values",
             "same output", "same output after ..", "same output through a link",
             "output over an input", "existing output", "unknown extension", "no such directory"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_job_names_its_row_and_nothing_is_written(kind, tmp_path, capsys):
    row, message = bad_jobs(tmp_path)[kind]
    ok = "char.png,bg.png,anim_start.png,anim_end.png,"
    jobs = csv_jobs(tmp_path, None, rows=[ok + "sub/o1.png", row, ok + "o4.png"])
    assert main(["render", "--batch", str(jobs)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("eqsdk: error: jobs.csv, row 3: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert outputs_of(tmp_path) == {"text.png", "cut.png"} and (tmp_path / "keep.png").read_bytes() == b"keep me"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_an_output_that_cannot_be_written_is_found_before_any_render(tmp_path, capsys):
    # /proc takes no new files, even from root (for whom permissions do not stop a write).
    jobs = csv_jobs(tmp_path, ["o1.png", "/proc/eqsdk-o2.png"])
    assert main(["render", "--batch", str(jobs)]) == 2
    err = capsys.readouterr().err
    assert "jobs.csv, row 3: output '/proc/eqsdk-o2.png': cannot write in '/proc'" in err
    assert outputs_of(tmp_path) == set()


def test_json_jobs_name_the_job(tmp_path, capsys):
    job_dir(tmp_path)
    job = {"char": "char.png", "bg": "bg.png", "anim_start": "anim_start.png", "anim_end": "anim_end.png"}
    (tmp_path / "jobs.json").write_text(
        __import__("json").dumps([{**job, "output": "a.png"}, {**job, "output": 3}, {**job, "outptu": "c.png"}]))
    assert main(["render", "--batch", str(tmp_path / "jobs.json")]) == 2
    assert "jobs.json, job 2: output got 3; each job needs a file name" in capsys.readouterr().err
    assert outputs_of(tmp_path) == set()


def test_a_header_with_an_unknown_column(tmp_path, capsys):
    jobs = csv_jobs(tmp_path, ["a.png"])
    jobs.write_text(jobs.read_text().replace("output", "ouptut"))
    assert main(["render", "--batch", str(jobs)]) == 2
    assert "jobs.csv, row 1: header char,bg,anim_start,anim_end,ouptut; expected the columns" in capsys.readouterr().err


@pytest.mark.parametrize("failure", [eqsdk.InputError("disk full"), KeyboardInterrupt()])
def test_a_failure_while_rendering_leaves_no_outputs(failure, tmp_path, monkeypatch):
    jobs = csv_jobs(tmp_path, ["o1.png", "o2.png", "keep.png", "o4.png"])
    (tmp_path / "keep.png").write_bytes(b"keep me")  # replaced only by a run that succeeds
    calls = []
    render_arrays = eqsdk.Renderer.render_arrays

    def fail_on_the_third_batch(self, *x):
        calls.append(len(x[0]))
        if len(calls) == 3:
            raise failure
        return render_arrays(self, *x)

    monkeypatch.setattr(eqsdk.Renderer, "render_arrays", fail_on_the_third_batch)
    with pytest.raises(type(failure)):
        render_jobs(str(jobs), "mnist", "cpu", scale=1, force=True, check_motion=False, batch=1)
    assert calls == [1, 1, 1]  # two jobs were rendered and saved (aside) before the failure
    assert outputs_of(tmp_path) == set() and (tmp_path / "keep.png").read_bytes() == b"keep me"
