"""The training command: budgets, checkpoints that resume, samples and logs."""
import json

import pytest
import torch

from train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from train.model import ModelConfig, SceneModel
from train.train import main


def test_train_writes_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    tiny = ["--channels", "16", "--res-blocks", "1", "--tz-hidden", "16", "--batch", "8",
            "--n-backgrounds", "4", "--sample-every", "0"]
    main(["--out", str(out), "--steps", "3", *tiny])
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3 and ckpt["samples"] == 24
    assert ckpt["model_config"]["channels"] == 16 and ckpt["train_config"]["batch"] == 8
    assert {"model", "optimizer", "seed", "command"} <= set(ckpt)
    assert (out / "samples.png").exists()

    main(["--out", str(out), "--steps", "5", *tiny])  # resumes: two more steps, same config
    resumed = read_checkpoint(out / "last.pt")
    assert resumed["step"] == 5 and resumed["train_config"] == ckpt["train_config"]
    assert not torch.equal(resumed["model"]["g.net.0.weight"], ckpt["model"]["g.net.0.weight"])
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 5 and "val_scene" in records[-1]


def test_the_self_warp_terms_are_trained_and_logged(tmp_path):
    out = tmp_path / "run"
    main(["--out", str(out), "--steps", "2", "--channels", "16", "--res-blocks", "1", "--tz-hidden", "16",
          "--batch", "8", "--n-backgrounds", "4", "--sample-every", "0", "--alpha-warp", "0.3"])
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["warp_theta"] > 0 and records[-1]["warp_equiv"] > 0
    assert read_checkpoint(out / "last.pt")["train_config"]["alpha_warp"] == 0.3


def test_train_only_updates_the_named_networks(tmp_path):
    out = tmp_path / "run"
    main(["--out", str(out), "--steps", "2", "--channels", "16", "--res-blocks", "1", "--tz-hidden", "16",
          "--batch", "8", "--n-backgrounds", "4", "--sample-every", "0", "--warmup-steps", "1",
          "--train-only", "t_z", "--recolour", "0.5"])
    torch.manual_seed(0)  # the run's seed: its initial weights
    start = SceneModel(ModelConfig(channels=16, res_blocks=1, tz_hidden=16)).state_dict()
    ckpt = read_checkpoint(out / "last.pt")
    changed = {k.split(".")[0] for k, v in ckpt["model"].items() if not torch.equal(v, start[k])}
    assert changed == {"t_z"}
    assert ckpt["train_config"]["train_only"] == "t_z" and ckpt["train_config"]["recolour"] == 0.5


def test_train_only_rejects_an_unknown_network(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "run"), "--steps", "1", "--train-only", "t_z,decoder"])
    assert e.value.code == 2 and "decoder" in capsys.readouterr().err


RAN = []


def record_call(*args):
    RAN.append(args)


class Payload:
    def __reduce__(self):  # unpickling it would call record_call("pwned")
        return record_call, ("pwned",)


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_not_run(tmp_path):
    path = tmp_path / "shared.pt"
    torch.save({"model": {}, "model_config": {}, "hook": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused.*tensors and plain data"):
        load_checkpoint(path)
    assert RAN == []


def test_a_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")
