"""Data-parallel training under torchrun on the CPU (gloo), two processes: the ranks stay identical,
the run equals one process taking the same shards of the same global batch, and a resumed run
continues exactly."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.checkpoint import read_checkpoint
from train.train import main

pytestmark = [pytest.mark.data("mnist"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--channels", "16", "--res-blocks", "1", "--tz-hidden", "16", "--batch", "8", "--n-backgrounds", "4",
        "--sample-every", "0", "--warmup-steps", "1", "--char-dropout", "0.5", "--equiv-start", "0",
        "--equiv-ramp", "1", "--threads", "1"]


def torchrun(out: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "train.train", "--out", str(out), *TINY, *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(out / "last.pt")["model"]


def test_two_processes_equal_one_process_taking_the_same_shards(tmp_path):
    torchrun(tmp_path / "ddp", "--steps", "3")
    ckpt = read_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["step"] == 3 and ckpt["samples"] == 24 and ckpt["train_config"]["shards"] == 2
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["ranks_max_abs_diff"] for r in log] == [0.0] * 3 and log[-1]["processes"] == 2

    main(["--out", str(tmp_path / "one"), *TINY, "--steps", "3", "--shards", "2"])
    one = weights(tmp_path / "one")
    assert read_checkpoint(tmp_path / "one" / "last.pt")["train_config"] == ckpt["train_config"]
    for name, w in weights(tmp_path / "ddp").items():
        torch.testing.assert_close(w, one[name], rtol=1e-4, atol=1e-5, msg=name)
    main(["--out", str(tmp_path / "whole"), *TINY, "--steps", "3"])  # one shard: other pairs, another loss
    assert not torch.allclose(weights(tmp_path / "whole")["g.net.0.weight"], one["g.net.0.weight"], atol=1e-5)


def test_a_resumed_run_continues_exactly(tmp_path):
    torchrun(tmp_path / "straight", "--steps", "4")
    torchrun(tmp_path / "resumed", "--steps", "4", "--stop-at", "2")
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 2
    torchrun(tmp_path / "resumed", "--steps", "4")
    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(w, resumed[name]) for name, w in straight.items())


def test_shards_that_do_not_divide_the_batch_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "run"), *TINY, "--steps", "1", "--shards", "3"])
    assert e.value.code == 2 and "--shards 3 with --batch 8" in capsys.readouterr().err
