"""The training command: budgets, checkpoints that resume, samples and logs."""
import json

import pytest
import torch

from train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from train.train import Budget, TrainConfig, char_dropout, equiv_weight, learning_rate, main, near_pairs


TINY_RUN = ["--channels", "16", "--res-blocks", "1", "--tz-hidden", "16", "--batch", "8",
            "--n-backgrounds", "4", "--sample-every", "0"]


@pytest.mark.data("mnist")
def test_train_writes_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    tiny = TINY_RUN
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


def test_schedules():
    tcfg = TrainConfig(lr=1e-3, lr_final=0.05, warmup_steps=200, alpha_equiv=0.3, equiv_start=1000,
                       equiv_ramp=500, char_dropout=0.5, char_dropout_until=2000, near_until=100)
    assert learning_rate(tcfg, 0, 0.0) == pytest.approx(1e-3 / 200)  # warmup
    assert learning_rate(tcfg, 199, 0.0) == pytest.approx(1e-3)
    assert learning_rate(tcfg, 5000, 0.5) == pytest.approx(1e-3 * 0.525)  # half way down the cosine
    assert learning_rate(tcfg, 5000, 1.0) == pytest.approx(5e-5)
    assert [equiv_weight(tcfg, n) for n in (0, 1000, 1250, 1500, 9000)] == pytest.approx([0, 0, 0.15, 0.3, 0.3])
    assert [char_dropout(tcfg, n) for n in (0, 1000, 2000, 9000)] == pytest.approx([0.5, 0.25, 0, 0])
    assert near_pairs(tcfg, 99) and not near_pairs(tcfg, 100)


def test_a_budget_ends_at_its_steps_or_minutes_or_where_it_stops():
    assert Budget(steps=10).fraction({"step": 5, "elapsed": 0.0}) == 0.5
    assert Budget(steps=10, minutes=1).fraction({"step": 5, "elapsed": 45.0}) == 0.75
    assert not Budget(steps=10, stop_at=4).done({"step": 3, "elapsed": 0.0})
    assert Budget(steps=10, stop_at=4).done({"step": 4, "elapsed": 0.0})
    assert Budget(minutes=1).done({"step": 1, "elapsed": 60.0})


@pytest.mark.data("mnist")
def test_a_stage_stopped_early_keeps_its_schedule_and_the_next_grows_from_it(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    main(["--out", str(first), "--steps", "10", "--stop-at", "2", *TINY_RUN, "--warmup-steps", "1"])
    records = [json.loads(line) for line in (first / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    assert records[-1]["lr"] == pytest.approx(learning_rate(TrainConfig(warmup_steps=1), 1, 0.1))
    main(["--out", str(second), "--steps", "1", *TINY_RUN, "--init-from", str(first / "last.pt"),
          "--decoder-extra", "1", "--recolour", "0.5"])
    ckpt = read_checkpoint(second / "last.pt")
    assert ckpt["step"] == 1 and ckpt["model_config"]["decoder_extra"] == 1
    assert ckpt["train_config"]["recolour"] == 0.5
    assert ckpt["init_from"]["path"] == str(first / "last.pt") and ckpt["init_from"]["step"] == 2


def test_a_missing_data_set_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "run"), "--steps", "1", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "mnist data not found" in err and "t10k-images-idx3-ubyte.gz" in err
    assert not (tmp_path / "run").exists()


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
