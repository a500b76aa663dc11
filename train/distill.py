"""Train a bundle's motion reader (train.model.MotionReader): the theta of T^Z(f_c(x_t1), f_c(x_t2))
read from the frames themselves by a small network, so that a driving frame skips f_c and T^Z.

    python -m train.distill eqsdk/models/mnist --out runs/reader-mnist --recipe recipes/mnist.toml
    python -m train.distill eqsdk/models/mnist --out runs/reader-try --minutes 30 --width 16

The teacher is the bundle's own model (export.from_bundle), frozen; the pairs are drawn from the
training split of the data it was trained on, as its last stage drew them (a footage bundle: its
folder of videos, which must be where it was). The teacher runs under bf16 autocast. The loss is
the mean squared displacement between the reader's affine and T^Z's (model.displacement): how far
apart the two send the points of the frame, plus the origins' squared distance. Resumes from OUT/reader.pt; OUT/log.jsonl keeps
the training and validation figures (validation: pairs of the validation split). A recipe's
[reader] table gives the shipped reader's budget (`steps`) and settings (fields of DistillConfig
and ReaderConfig). Export adds the reader to a bundle: python -m export.add_reader.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from eqsdk.errors import EqsdkError
from eqsdk.manifest import Manifest
from export.from_bundle import from_bundle
from train.checkpoint import read_checkpoint, save_checkpoint
from train.datasets import pair_source
from train.model import MotionReader, ReaderConfig, SceneModel, config_from_dict, displacement
from train.recipe import RecipeError
from train.train import Budget
from train.videos import DEFAULT_MAX_GAP


@dataclass(frozen=True)
class DistillConfig:
    batch: int = 64
    lr: float = 1e-3
    lr_final: float = 0.05  # cosine decay to this fraction of lr over the budget
    seed: int = 0

    from_dict = classmethod(config_from_dict)


def pairs_of(model: SceneModel, tcfg, split: str):
    """The pairs of one split of the data a bundle's model was trained on (tcfg: the train_config
    its manifest records)."""
    return pair_source(tcfg.get("dataset", "mnist"), split, tcfg.get("n_backgrounds", 64),
                       seed=tcfg.get("seed", 0), size=model.cfg.image_size, crop=tcfg.get("video_crop"),
                       max_gap=tcfg.get("max_gap", DEFAULT_MAX_GAP))


def teacher(model: SceneModel, x1: torch.Tensor, x2: torch.Tensor, bf16: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """T^Z's theta (B, 2, 3) for pairs of frames (B, 3, S, S) x2, and its origin, the centre of
    f_c(x1) (B, 2); fp32, computed under bf16 autocast with `bf16`."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        z1, z2 = model.f_c(torch.cat([x1, x2])).chunk(2)
        return model.t_z.theta(z1, z2).float(), model.t_z.centre(z1)


def loss(theta: torch.Tensor, origin: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(B,): the displacement between the affines plus the squared distance between the origins,
    both in units of the frame's half-width."""
    return displacement(theta, target[0]) + (origin - target[1]).square().sum(1)


def reader_render(model: SceneModel, reader: MotionReader, x_c, x_t1, x_t2, x_b) -> torch.Tensor:
    """h(x_c, x_t1, x_t2, x_b) with the reader's theta in place of T^Z's: what eqsdk's driving
    path with the reader renders."""
    with torch.no_grad():
        z_c = model.f_c(x_c)
        z_moved = model.t_z.move(*reader(x_t1, x_t2), z_c)
        return model.g(z_moved, model.f_b(x_b))


def validation(model: SceneModel, reader: MotionReader, pairs: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """RMS displacement of the reader's theta from T^Z's and of T^Z's from the identity (the
    motions' own size), and RMS distance of the reader's origin from T^Z's, in units of the
    frame's half-width."""
    x1, x2 = (x.split(128) for x in pairs)
    target = [torch.cat(t) for t in zip(*(teacher(model, a, b) for a, b in zip(x1, x2)))]
    with torch.no_grad():
        theta, origin = (torch.cat(t) for t in zip(*(reader(a, b) for a, b in zip(x1, x2))))
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand_as(target[0])
    return {"rms": float(displacement(theta, target[0]).mean().sqrt()),
            "rms_motion": float(displacement(identity, target[0]).mean().sqrt()),
            "rms_origin": float((origin - target[1]).square().sum(1).mean().sqrt())}


def reader_checkpoint(reader: MotionReader, manifest: Manifest, dcfg: DistillConfig, state: dict,
                      validation: dict, opt: torch.optim.Optimizer | None = None) -> dict:
    """A reader checkpoint: weights, configs, progress, and the bundle that taught it."""
    return {"reader": reader.state_dict(), "reader_config": reader.rcfg.to_dict(),
            "optimizer": None if opt is None else opt.state_dict(), "distill_config": asdict(dcfg),
            "state": state, "validation": validation,
            "bundle": {"name": manifest.name, "sha256": {g: e.sha256 for g, e in manifest.graphs.items()}}}


def learning_rate(dcfg: DistillConfig, fraction: float) -> float:
    """Cosine decay from lr to lr * lr_final over the budget; a float, as a checkpoint keeps it."""
    return dcfg.lr * (dcfg.lr_final + (1 - dcfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0))))


def read_recipe(path: Path) -> tuple[Budget, DistillConfig, ReaderConfig]:
    """A recipe's [reader] table: its budget and settings."""
    try:
        table = dict(tomllib.loads(Path(path).read_text())["reader"])
        budget = Budget(steps=table.pop("steps"))
        d = {k: table.pop(k) for k in list(table) if k in asdict(DistillConfig())}
        return budget, DistillConfig(**d), ReaderConfig(**table)
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise RecipeError(f"{path}: no reader recipe ({e}); expected a [reader] table with steps "
                          "and fields of DistillConfig or ReaderConfig") from None


def distill(bundle: Path, out: Path, budget: Budget, dcfg: DistillConfig, rcfg: ReaderConfig,
            validate_every: float = 120) -> dict:
    """Train (or resume) OUT/reader.pt to the end of its budget; returns its last validation."""
    model, manifest = from_bundle(bundle)
    for p in model.parameters():
        p.requires_grad_(False)
    tcfg = manifest.training.train_config if manifest.training else {}
    train_set, val_set = pairs_of(model, tcfg, "train"), pairs_of(model, tcfg, "val")
    val = val_set.sample_pairs(512, np.random.default_rng([dcfg.seed, 1]))[:2]

    out.mkdir(parents=True, exist_ok=True)
    path = out / "reader.pt"
    reader = MotionReader(model.cfg, rcfg)
    opt = torch.optim.AdamW(reader.parameters(), lr=dcfg.lr, weight_decay=1e-4)
    state = {"step": 0, "samples": 0, "elapsed": 0.0}
    if path.exists():
        ckpt = read_checkpoint(path)
        reader = MotionReader(model.cfg, ReaderConfig.from_dict(ckpt["reader_config"]))
        reader.load_state_dict(ckpt["reader"])
        opt = torch.optim.AdamW(reader.parameters(), lr=dcfg.lr, weight_decay=1e-4)
        opt.load_state_dict(ckpt["optimizer"])
        dcfg, state = DistillConfig.from_dict(ckpt["distill_config"]), ckpt["state"]

    def save(figures: dict) -> None:
        save_checkpoint(path, reader_checkpoint(reader, manifest, dcfg, state, figures, opt))

    log = (out / "log.jsonl").open("a")
    last_validation, figures = time.perf_counter(), {}
    while not budget.done(state):
        t0 = time.perf_counter()
        rng = np.random.default_rng([dcfg.seed, state["step"]])  # resumable stream
        x1, x2, _ = train_set.sample_pairs(dcfg.batch, rng, augment=True, recolour=tcfg.get("recolour", 0.0))
        # bf16 targets: 3x as fast on this CPU and within 0.006 of fp32's, well under the reader's error
        target = teacher(model, x1, x2, bf16=True)
        for group in opt.param_groups:
            group["lr"] = learning_rate(dcfg, budget.fraction(state))
        value = loss(*reader(x1, x2), target).mean()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        state.update(step=state["step"] + 1, samples=state["samples"] + dcfg.batch,
                     elapsed=state["elapsed"] + time.perf_counter() - t0)
        row = {"step": state["step"], "elapsed": round(state["elapsed"], 1), "loss": float(value.detach())}
        if budget.done(state) or time.perf_counter() - last_validation > validate_every:
            reader.eval()
            figures = validation(model, reader, val)
            reader.train()
            row.update(val=figures)
            save(figures)
            print(f"step {state['step']:,}  {state['elapsed'] / 60:.1f} min  loss {row['loss']:.2e}  "
                  f"val rms {figures['rms']:.4f} (motions {figures['rms_motion']:.4f}), origin {figures['rms_origin']:.4f}", flush=True)
            last_validation = time.perf_counter()
        if state["step"] % 20 == 0 or "val" in row:
            log.write(json.dumps(row) + "\n")
            log.flush()
    return figures


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="bundle directory whose f_c and T^Z teach the reader")
    p.add_argument("--out", type=Path, required=True, help="run directory (resumed when it exists)")
    p.add_argument("--recipe", type=Path, help="a recipe file: its [reader] table's budget and settings")
    p.add_argument("--steps", type=int, help="steps in total, across resumes")
    p.add_argument("--minutes", type=float, help="training time in total, across resumes (with --steps: "
                   "whichever ends first)")
    p.add_argument("--threads", type=int, default=None)
    for f, default in asdict(DistillConfig()).items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(default), default=default)
    for f, default in asdict(ReaderConfig()).items():
        p.add_argument(f"--{f}", type=type(default), default=default)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.recipe is None) == (args.steps is None and args.minutes is None):
        p.error("expected --recipe, or a budget (--steps and/or --minutes)")
    try:
        if args.recipe:
            budget, dcfg, rcfg = read_recipe(args.recipe)
        else:
            budget = Budget(steps=args.steps, minutes=args.minutes)
            dcfg = DistillConfig(**{f: getattr(args, f) for f in asdict(DistillConfig())})
            rcfg = ReaderConfig(**{f: getattr(args, f) for f in asdict(ReaderConfig())})
        distill(args.bundle, args.out, budget, dcfg, rcfg)
    except EqsdkError as e:
        sys.exit(f"train.distill: {e}")


if __name__ == "__main__":
    main()
