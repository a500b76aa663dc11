"""Many renders in one process: a CSV or JSON list of jobs (`eqsdk render --batch jobs.csv`).

Each job names char, bg, anim_start, anim_end and output; relative paths are relative to the
jobs file's directory, so the file works from anywhere. Every job is checked before any render
(read_jobs), and the outputs of a run appear all together at its end or not at all (staged).
CSV files as spreadsheets save them are fine: a UTF-8 byte-order mark, CRLF line ends, blank rows.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from eqsdk.errors import InputError
from eqsdk.images import check_output, open_image, temp_beside

FIELDS = ("char", "bg", "anim_start", "anim_end", "output")
INPUTS = FIELDS[:4]
MAX_JOBS_FILE_BYTES = 64 << 20  # about a million jobs


@dataclass(frozen=True)
class Job:
    where: str  # "jobs.csv, row 3": how errors name the job
    char: Path
    bg: Path
    anim_start: Path
    anim_end: Path
    output: Path


def read_rows(path: Path) -> list[tuple[str, dict]]:
    """(where, {field: value}) for each job of the file; a CSV's row numbers are a spreadsheet's
    (the header is row 1), a JSON list's jobs count from 1."""
    name = path.name
    if path.suffix.lower() not in (".csv", ".json"):
        raise InputError(f"jobs file {str(path)!r}: expected a .csv or .json file")
    if path.is_dir():
        raise InputError(f"jobs file {str(path)!r} is a directory; expected a .csv or .json file")
    if not path.is_file():
        raise InputError(f"jobs file {str(path)!r}: no such file")
    if path.stat().st_size > MAX_JOBS_FILE_BYTES:
        raise InputError(f"jobs file {str(path)!r}: {path.stat().st_size:,} bytes; expected at "
                         f"most {MAX_JOBS_FILE_BYTES:,}: split it")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a spreadsheet's byte-order mark, if any
        if path.suffix.lower() == ".json":
            items = json.loads(text)
            if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
                raise InputError(f"jobs file {str(path)!r}: expected a JSON list of objects with "
                                 f"keys {', '.join(FIELDS)}")
            return [(f"{name}, job {k}", r) for k, r in enumerate(items, start=1)]
        records = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, csv.Error) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"jobs file {str(path)!r}: unreadable ({e})") from None
    if not records:
        return []
    header = [h.strip() for h in records[0]]
    unknown = [h for h in header if h not in FIELDS]
    if unknown or len(set(header)) != len(header):
        raise InputError(f"{name}, row 1: header {','.join(header)}; expected the columns "
                         f"{','.join(FIELDS)} (in any order)")
    rows = []
    for k, values in enumerate(records[1:], start=2):
        if not any(v.strip() for v in values):
            continue  # blank rows, which spreadsheets keep
        if len(values) != len(header):
            raise InputError(f"{name}, row {k}: {len(values)} values; expected {len(header)} "
                             f"({','.join(header)})")
        rows.append((f"{name}, row {k}", dict(zip(header, values))))
    return rows


def parse_job(where: str, row: dict, base: Path) -> Job:
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r}; expected {', '.join(FIELDS)}")
    for f in FIELDS:
        value = row.get(f)
        if not isinstance(value, str) or not value.strip():
            got = "missing" if f not in row else f"got {json.dumps(value)}"
            raise InputError(f"{where}: {f} {got}; each job needs a file name for each of "
                             f"{', '.join(FIELDS)}")
    return Job(where, **{f: base / row[f].strip() for f in FIELDS})


def read_jobs(path: str | Path, overwrite: bool = False) -> list[Job]:
    """The jobs of a .csv (header row with FIELDS) or .json (a list of objects) file, each
    checked: every input decodes as an image, every output is a new image file (or replaced
    with `overwrite`) in a place that can be written, no two jobs write the same file (after
    resolving `..` and links) and no job writes over an input."""
    path = Path(path)
    jobs = [parse_job(where, row, path.parent) for where, row in read_rows(path)]
    if not jobs:
        raise InputError(f"jobs file {str(path)!r}: no jobs; expected a row (or object) per "
                         f"render with {', '.join(FIELDS)}")
    decoded: set[str] = set()
    for job in jobs:
        for f in INPUTS:
            real = os.path.realpath(getattr(job, f))
            if real not in decoded:  # each distinct input once
                # Decoded and dropped: rendering decodes it again a batch at a time, so memory
                # stays bounded however many jobs the file holds.
                with within(job):
                    open_image(getattr(job, f), f)
                decoded.add(real)
    written: dict[str, Job] = {}
    for job in jobs:
        real = os.path.realpath(job.output)
        if real in written:
            raise InputError(f"{job.where}: output {str(job.output)!r} is also written by an "
                             f"earlier job ({written[real].where})")
        if real in decoded:
            raise InputError(f"{job.where}: output {str(job.output)!r} is an input of this run; "
                             "expected a new file")
        with within(job):
            check_output(job.output, overwrite)
        written[real] = job
    return jobs


@contextlib.contextmanager
def within(job: Job) -> Iterator[None]:
    """InputErrors raised inside name the job's row."""
    try:
        yield
    except InputError as e:
        raise InputError(f"{job.where}: {e}") from None


@contextlib.contextmanager
def staged(outputs: list[Path]) -> Iterator[dict[Path, Path]]:
    """A temporary file beside each output to write instead (output -> temporary path). On a
    clean exit they replace the outputs all together; on any error or interruption they are
    removed, and the outputs are as they were."""
    temps: dict[Path, Path] = {}
    done: list[Path] = []
    existed = {p: p.exists() for p in outputs}
    try:
        for p in outputs:
            try:
                temps[p] = temp_beside(p)
            except OSError as e:  # the place changed since read_jobs checked it
                raise InputError(f"output {str(p)!r}: cannot write in {str(p.parent)!r} "
                                 f"({e.strerror or e})") from None
        yield temps
        for p in outputs:
            os.replace(temps[p], p)
            done.append(p)
    except BaseException:
        for p in done:  # a replace failed half-way: take back the new files of this run
            if not existed[p]:
                with contextlib.suppress(OSError):
                    os.remove(p)
        raise
    finally:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
