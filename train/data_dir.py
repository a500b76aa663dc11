"""Where the data sets are: one lookup for MNIST and the LPC layer sheets.

A data directory holds one folder per data set: mnist/ (MNIST's four idx .gz files) and lpc/ (the
LPC layer sheets). find_data(name, data_dir) looks, in this order, in
  1. data_dir, when given (the scripts' --data-dir option);
  2. $EQSDK_DATA, when set (then only there: it is authoritative);
  3. the defaults: ../shared/data beside the current directory, ../shared/data beside the
     repository checkout, and ~/.cache/eqsdk/data.
"""
from __future__ import annotations

import os
from pathlib import Path

from eqsdk.errors import EqsdkError

ENV = "EQSDK_DATA"
REPO = Path(__file__).resolve().parents[1]
# name -> (a file every copy has, how to get the data set)
DATASETS = {
    "mnist": ("t10k-labels-idx1-ubyte.gz",
              "the four MNIST files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
              "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (http://yann.lecun.com/exdb/mnist/ "
              "or its mirror https://ossci-datasets.s3.amazonaws.com/mnist/)"),
    "lpc": ("body/male_light.png",
            "the 126 LPC layer sheets (github.com/makrohn/Universal-LPC-spritesheet at 29c1d69, each "
            "renamed <layer>/<sex>_<item>.png; train/lpc.py lists them)"),
}


class DataNotFoundError(EqsdkError, FileNotFoundError):
    """A data set is not where the lookup searched."""


def default_dirs() -> list[Path]:
    return [Path.cwd().parent / "shared" / "data", REPO.parent / "shared" / "data",
            Path("~/.cache/eqsdk/data").expanduser()]


def search_dirs(data_dir: Path | str | None = None) -> list[Path]:
    """The data directories find_data searches, in order."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    if os.environ.get(ENV):
        return [Path(os.environ[ENV]).expanduser()]
    return list(dict.fromkeys(d.resolve() for d in default_dirs()))


def find_data(name: str, data_dir: Path | str | None = None) -> Path:
    """The folder of data set `name` ("mnist" or "lpc"); DataNotFoundError says what to fetch."""
    if name not in DATASETS:
        raise ValueError(f"data set {name!r}: expected one of {sorted(DATASETS)}")
    marker, source = DATASETS[name]
    dirs = search_dirs(data_dir)
    for d in dirs:
        if (d / name / marker).is_file():
            return d / name
    where = (f"--data-dir {data_dir}" if data_dir is not None
             else f"${ENV}={os.environ[ENV]}" if os.environ.get(ENV) else "the default places")
    raise DataNotFoundError(
        f"{name} data not found in {where} ({', '.join(str(d / name) for d in dirs)}); put {source} "
        f"in DIR/{name}/ and pass --data-dir DIR or set {ENV}=DIR")
