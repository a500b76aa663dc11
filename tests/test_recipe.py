"""Recipes: each shipped bundle's recipe replays the stages its manifest logged, and the runner
trains the stages in order, each from the one before, resumable."""
import json
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from eqsdk.bundle import bundle_dir
from train.checkpoint import read_checkpoint
from train.recipe import RecipeError, main, read_stages
from train.train import configs, parser, train

REPO = Path(__file__).resolve().parents[1]


def logged_stages(name: str) -> list[dict]:
    """The training records of a bundle's manifest, first stage first."""
    chain, record = [], json.loads((bundle_dir(name) / "manifest.json").read_text())["training"]
    while record:
        chain.append(record)
        record = record.get("init_from")
    return chain[::-1]


@pytest.mark.parametrize("name", ["mnist", "sprites", "sprites-bg"])
def test_the_recipe_of_each_shipped_bundle_is_its_logged_stages(name):
    stages, logged = read_stages(REPO / "recipes" / f"{name}.toml"), logged_stages(name)
    assert logged[-1]["recipe"] == f"recipes/{name}.toml" and len(stages) == len(logged)
    for (cfg, tcfg, budget), record in zip(stages, logged):
        args = parser().parse_args(shlex.split(record["command"])[3:])  # after "python -m train.train"
        assert (cfg, tcfg) == configs(args), record["command"]
        if record["minutes"] < args.minutes:  # a stage stopped part way through its schedule
            assert budget.stop_at == record["step"] and budget.steps > record["step"]
        else:
            assert budget.steps == record["step"] and budget.stop_at is None


TINY_RECIPE = """
[[stage]]
steps = 2
channels = 16
res_blocks = 1
tz_hidden = 16
batch = 8
n_backgrounds = 4
warmup_steps = 1

[[stage]]
steps = 5
stop_at = 1
decoder_extra = 1
lr = 5e-4
"""


@pytest.mark.data("mnist")
def test_the_runner_trains_each_stage_from_the_one_before(tmp_path, monkeypatch):
    recipe, out = tmp_path / "tiny.toml", tmp_path / "runs"
    recipe.write_text(TINY_RECIPE)
    with pytest.raises(SystemExit) as e:
        main([str(recipe), "--out", str(out), "--stage", "2"])  # stage 1 is not trained yet
    assert e.value.code == 2
    main([str(recipe), "--out", str(out), "--sample-every", "0"])
    first, second = (read_checkpoint(out / f"stage{k}" / "last.pt") for k in (1, 2))
    assert (first["step"], second["step"]) == (2, 1)
    assert first["recipe"] == second["recipe"] == str(recipe) and (first["stage"], second["stage"]) == (1, 2)
    assert second["model_config"]["decoder_extra"] == 1 and second["model_config"]["channels"] == 16
    assert second["train_config"]["lr"] == 5e-4 and second["train_config"]["batch"] == 8
    assert second["init_from"]["path"] == str(out / "stage1" / "last.pt") and second["init_from"]["stage"] == 1
    assert second["budget"] == {"steps": 5, "minutes": None, "stop_at": 1}
    main([str(recipe), "--out", str(out)])  # finished stages are not trained again
    assert read_checkpoint(out / "stage2" / "last.pt")["elapsed"] == second["elapsed"]


def test_a_malformed_recipe_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[stage]]\nsteps = 3\nalpha_warp = 0.3\n")
    with pytest.raises(RecipeError, match="stage 1: unknown keys \\['alpha_warp'\\]"):
        read_stages(bad)
    with pytest.raises(RecipeError, match="not a recipe"):
        read_stages(tmp_path / "absent.toml")


@pytest.mark.slow
@pytest.mark.data("mnist")
def test_the_first_steps_of_the_mnist_recipe_reproduce_its_logged_losses(tmp_path):
    """Stage 1 from its random start: the losses at step 20 are those of the shipped model's log
    (bf16 autocast on another CPU or thread count rounds a little differently)."""
    cfg, tcfg, budget = read_stages(REPO / "recipes" / "mnist.toml")[0]
    train(tmp_path, cfg, tcfg, replace(budget, stop_at=20), sample_every=1e9)
    replayed = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()][0]
    logged = json.loads((REPO / "results" / "mnist" / "train_log_stage1.jsonl").read_text().splitlines()[0])
    assert replayed["step"] == logged["step"] == 20
    for term in ("scene", "equiv", "inv", "lr"):
        assert replayed[term] == pytest.approx(logged[term], rel=0.02), term
