"""Many renders in one process: a CSV or JSON list of jobs (`eqsdk render --batch jobs.csv`).

Each job names char, bg, anim_start, anim_end and output; relative paths are relative to the
jobs file's directory, so the file works from anywhere. Every job is checked before any render.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from eqsdk.errors import InputError
from eqsdk.images import check_output

FIELDS = ("char", "bg", "anim_start", "anim_end", "output")


@dataclass(frozen=True)
class Job:
    char: Path
    bg: Path
    anim_start: Path
    anim_end: Path
    output: Path


def read_jobs(path: str | Path, overwrite: bool = False) -> list[Job]:
    """The jobs of a .csv (header row with FIELDS) or .json (a list of objects) file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"jobs file {str(path)!r}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        elif path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise InputError(f"jobs file {str(path)!r}: expected a JSON list of objects")
        else:
            raise InputError(f"jobs file {str(path)!r}: expected a .csv or .json file")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"jobs file {str(path)!r}: unreadable ({e})") from None
    if not rows:
        raise InputError(f"jobs file {str(path)!r}: no jobs")
    jobs, outputs = [], set()
    for k, row in enumerate(rows, start=1):
        where = f"{path.name}, job {k}"
        missing = [f for f in FIELDS if not str(row.get(f) or "").strip()]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}; each job needs {', '.join(FIELDS)}")
        job = Job(**{f: path.parent / str(row[f]).strip() for f in FIELDS})
        for f in FIELDS[:4]:
            if not getattr(job, f).is_file():
                raise InputError(f"{where}: {f} {str(getattr(job, f))!r}: no such file")
        if job.output in outputs:
            raise InputError(f"{where}: output {str(job.output)!r} is also written by an earlier job")
        outputs.add(job.output)
        try:
            check_output(job.output, overwrite)
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        jobs.append(job)
    return jobs
