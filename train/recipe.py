"""Replay a recipe: the training stages of a shipped model, in order, from scratch.

    python -m train.recipe recipes/mnist.toml --out runs/mnist [--stage N]

A recipe (recipes/*.toml) lists its stages as [[stage]] tables. Each stage starts from the weights
of the one before (the first from a random start) and from its settings: it lists only the
ModelConfig and TrainConfig fields that change, and its budget, `steps` (the schedule's length)
and optionally `stop_at` (a stage that stops part way through its schedule). Stage k trains in
OUT/stage<k>/ and resumes there when interrupted; finished stages are skipped. Each checkpoint
records the recipe and the stage, which the exporter copies into the bundle's manifest.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import torch

from eqsdk.errors import EqsdkError, InputError
from train.checkpoint import read_checkpoint
from train.model import ModelConfig
from train.train import Budget, TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
BUDGET_KEYS = ("steps", "stop_at")


class RecipeError(InputError):
    """A recipe file is missing or malformed."""


def read_stages(path: Path) -> list[tuple[ModelConfig, TrainConfig, Budget]]:
    """The recipe's stages, each with its settings accumulated from the stages before it."""
    try:
        stages = tomllib.loads(Path(path).read_text())["stage"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as e:
        raise RecipeError(f"{path}: not a recipe ({e}); expected [[stage]] tables") from None
    model_keys, train_keys = {f.name for f in fields(ModelConfig)}, {f.name for f in fields(TrainConfig)}
    settings, out = {}, []
    for k, stage in enumerate(stages, 1):
        unknown = sorted(set(stage) - model_keys - train_keys - set(BUDGET_KEYS))
        if unknown or "steps" not in stage:
            raise RecipeError(f"{path}: stage {k}: unknown keys {unknown} or no steps; expected a budget "
                              f"{BUDGET_KEYS} and fields of ModelConfig or TrainConfig")
        settings |= {key: v for key, v in stage.items() if key not in BUDGET_KEYS}
        out.append((ModelConfig(**{key: v for key, v in settings.items() if key in model_keys}),
                    TrainConfig(**{key: v for key, v in settings.items() if key in train_keys}),
                    Budget(steps=stage["steps"], stop_at=stage.get("stop_at"))))
    return out


def recipe_name(path: Path) -> str:
    """The recipe as the checkpoint names it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def finished(stage_dir: Path, budget: Budget) -> bool:
    last = stage_dir / "last.pt"
    return last.exists() and budget.done(read_checkpoint(last))


def run(recipe: Path, out: Path, only: int | None = None, sample_every: float = 300,
        data_dir: Path | None = None) -> None:
    stages = read_stages(recipe)
    if only is not None and not 1 <= only <= len(stages):
        raise RecipeError(f"--stage {only}: {recipe} has stages 1 to {len(stages)}")
    for k, (cfg, tcfg, budget) in enumerate(stages, 1):
        stage_dir = out / f"stage{k}"
        if (only is not None and k != only) or finished(stage_dir, budget):
            continue
        previous = out / f"stage{k - 1}" / "last.pt"
        if k > 1 and not finished(previous.parent, stages[k - 2][2]):
            raise RecipeError(f"stage {k} starts from stage {k - 1}, which is not finished in {previous.parent}")
        print(f"{recipe}: stage {k} of {len(stages)} -> {stage_dir}", file=sys.stderr)
        command = f"python -m train.recipe {shlex.quote(recipe_name(recipe))} --out {shlex.quote(str(out))} --stage {k}"
        train(stage_dir, cfg, tcfg, budget, previous if k > 1 else None,
              {"command": command, "recipe": recipe_name(recipe), "stage": k}, sample_every, data_dir)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", type=Path)
    p.add_argument("--out", type=Path, required=True, help="one folder per stage is made in it")
    p.add_argument("--stage", type=int, help="run this stage only (the one before must be finished)")
    p.add_argument("--sample-every", type=float, default=300, help="seconds between samples/val")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", type=Path, help="the data directory holding mnist/ and lpc/ (train/data_dir.py)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run(args.recipe, args.out, args.stage, args.sample_every, args.data_dir)
    except EqsdkError as e:  # a malformed recipe, a missing data set, an unreadable checkpoint
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
