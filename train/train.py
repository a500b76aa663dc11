"""Train the scene model with eq. 4, L_scene + a_equiv L_equiv + a_inv L_inv, on Moving MNIST
(--dataset mnist, the default) or the LPC sprites on white (sprites) or on diamond backgrounds
(sprites-bg); see train/datasets.py. The shipped models are replayed by their recipes
(train/recipe.py); this is one stage:

    python -m train.train --out runs/mnist --steps 10000
    python -m train.train --out runs/sprites-2 --dataset sprites --init-from runs/sprites/last.pt --steps 3000

Runs on CUDA when present, else CPU (bf16 autocast where the CPU has it). Resumes from
OUT/last.pt when it exists. Every --sample-every seconds it writes OUT/samples.png (rows: x1, x2,
render, background part alone g(f_b(x1)), character part alone g(f_c(x1))) and a validation loss
on the validation split (unseen backgrounds and digits or characters); OUT/log.jsonl keeps every
figure. T^Z is monitored by the spread of its theta over the batch and, where the dataset knows the
motion T^X (mnist), by their correlation.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from eqsdk.errors import EqsdkError, InputError
from train import distributed
from train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from train.datasets import DATASETS, VAL_BACKGROUNDS, VIDEOS, pair_source
from train.model import ModelConfig, SceneModel, config_from_dict, grow_from
from train.moving_mnist import affine_inverse
from train.videos import DEFAULT_MAX_GAP, parse_crop


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"  # one of datasets.DATASETS, or videos:DIR (the footage in folder DIR)
    n_backgrounds: int = 64  # training backgrounds (mnist, sprites-bg)
    recolour: float = 0.0  # share of training backgrounds whose colours are redrawn
    characters: int = 0  # sprites: only the first N characters of each split (0: all; quick runs)
    seed: int = 0
    batch: int = 64
    lr: float = 1e-3
    lr_final: float = 0.05  # cosine decay to this fraction of lr over the budget
    warmup_steps: int = 200
    alpha_equiv: float = 0.1
    alpha_inv: float = 3.0  # strong: a moving digit in f_b must cost more than it helps
    equiv_start: int = 150_000  # samples before L_equiv is used (T^Z only moves once g renders)
    equiv_ramp: int = 110_000  # samples over which alpha_equiv then ramps up from 0
    char_dropout: float = 0.5  # share of renders made from f_b alone at the start ...
    char_dropout_until: int = 300_000  # ... falling linearly to 0 at this many samples
    near_until: int = 100_000  # samples during which pairs are adjacent frames only
    video_crop: tuple[int, int, int, int] | None = None  # videos: x, y, w, h in source pixels (None: centre square)
    max_gap: int = DEFAULT_MAX_GAP  # videos: kept frames between a pair's two, at most
    # The batch is drawn and its loss taken in this many equal shards whose gradients are averaged:
    # one per rank under torchrun (its world size when left at 1), several per process to
    # accumulate gradients; the same shards give the same steps however many processes share them.
    shards: int = 1

    from_dict = classmethod(config_from_dict)


@dataclass(frozen=True)
class Budget:
    """How long a stage trains, in total across resumes: a schedule of `steps` steps and/or
    `minutes` (whichever ends first), stopped after `stop_at` steps if given (part way through)."""
    steps: int | None = None
    minutes: float | None = None
    stop_at: int | None = None

    def fraction(self, state: dict) -> float:
        """How far through its schedule the run is, in [0, 1]."""
        parts = [state["step"] / self.steps] if self.steps else []
        parts += [state["elapsed"] / (60 * self.minutes)] if self.minutes else []
        return max(parts)

    def done(self, state: dict) -> bool:
        return self.fraction(state) >= 1 or (self.stop_at is not None and state["step"] >= self.stop_at)


# Schedules: small functions of where training is.

def learning_rate(tcfg: TrainConfig, step: int, fraction: float) -> float:
    """Linear warmup over warmup_steps, times a cosine from lr down to lr_final * lr at the end."""
    warm = min(1.0, (step + 1) / tcfg.warmup_steps)
    return tcfg.lr * warm * (tcfg.lr_final + (1 - tcfg.lr_final) * 0.5 * (1 + math.cos(math.pi * fraction)))


def equiv_weight(tcfg: TrainConfig, samples: int) -> float:
    """a_equiv: 0 until equiv_start samples, then a linear ramp to alpha_equiv over equiv_ramp."""
    return tcfg.alpha_equiv * min(1.0, max(0.0, samples - tcfg.equiv_start) / tcfg.equiv_ramp)


def char_dropout(tcfg: TrainConfig, samples: int) -> float:
    """The share of renders made without the character, falling linearly to 0."""
    return tcfg.char_dropout * max(0.0, 1 - samples / tcfg.char_dropout_until)


def near_pairs(tcfg: TrainConfig, samples: int) -> bool:
    """Whether pairs are adjacent frames only (small motions first)."""
    return samples < tcfg.near_until


def shard_rng(tcfg: TrainConfig, step: int, shard: int) -> np.random.Generator:
    """The random stream of one shard of one step: resumable, and the same on any number of ranks."""
    return np.random.default_rng([tcfg.seed, step] if tcfg.shards == 1 else [tcfg.seed, step, shard])


def keep_character(tcfg: TrainConfig, rng: np.random.Generator, n: int, dropout: float,
                   device: torch.device) -> torch.Tensor:
    """(n,) 1 for the renders that keep the character, 0 for those dropped (character dropout). One
    shard draws from torch's seeded stream, as the shipped recipes did; several draw from their own
    streams, so that every rank draws what one process would."""
    u = torch.rand(n, device=device) if tcfg.shards == 1 else torch.from_numpy(rng.random(n)).to(device)
    return (u >= dropout).float()


def check_shards(tcfg: TrainConfig, ranks: distributed.Ranks) -> TrainConfig:
    """The run's shards (the world size under torchrun when not set), checked against the batch."""
    if ranks.distributed and tcfg.shards == 1:
        tcfg = replace(tcfg, shards=ranks.world)
    if tcfg.shards % ranks.world or tcfg.batch % tcfg.shards:
        raise InputError(f"--shards {tcfg.shards} with --batch {tcfg.batch} on {ranks.world} processes: expected "
                         "shards a multiple of the processes and the batch a multiple of the shards")
    return tcfg


def grid_image(rows: list[torch.Tensor], path: Path, n: int = 8) -> None:
    """Save rows of images (each (B, 3, S, S) in [0, 1]) as one PNG."""
    tiles = torch.stack([r[:n].float().clamp(0, 1).cpu() for r in rows])  # (R, n, 3, S, S)
    r, n, _, s, _ = tiles.shape
    img = tiles.permute(0, 3, 1, 4, 2).reshape(r * s, n * s, 3).numpy()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(path)


def theta_stats(theta: torch.Tensor, tx: np.ndarray | None) -> tuple[float, float | None]:
    """Spread of T^Z's theta over the batch, and its mean Pearson correlation with the matching
    ground truth (the inverse of the image-space motion T^X), entry by entry; None without T^X."""
    t = theta.reshape(len(theta), 6).numpy()
    spread = float(t.std(0).mean())
    if tx is None:
        return spread, None
    gt = affine_inverse(tx[:, 0]).reshape(len(t), 6)
    corr = [np.corrcoef(t[:, k], gt[:, k])[0, 1] for k in range(6) if t[:, k].std() > 1e-6]
    return spread, float(np.mean(corr)) if corr else 0.0


@torch.no_grad()
def decomposition(model: SceneModel, x: torch.Tensor, autocast) -> list[torch.Tensor]:
    """Renders of the background part alone, g(0 + f_b(x)), and the character part alone."""
    with autocast:
        z, b = model.f_c(x), model.f_b(x)
        return [model.g(torch.zeros_like(z), b), model.g(z, torch.zeros_like(b))]


def provenance(path: Path, ckpt: dict) -> dict:
    """What a run started from: the source checkpoint and how it was made."""
    return {"path": str(path), "command": ckpt.get("command"), "recipe": ckpt.get("recipe"),
            "stage": ckpt.get("stage"), "step": ckpt["step"], "samples": ckpt["samples"],
            "minutes": round(ckpt["elapsed"] / 60, 1), "init_from": ckpt.get("init_from")}


def start(out: Path, cfg: ModelConfig, tcfg: TrainConfig, init_from: Path | None, record: dict | None,
          device: torch.device):
    """The run in out/: resumed from out/last.pt (whose configs then hold), or new, from a random
    start or from init_from's weights. -> configs, model, optimiser, state and provenance."""
    last = out / "last.pt"
    ckpt = read_checkpoint(last) if last.exists() else None
    if ckpt:
        try:
            cfg, tcfg = ModelConfig.from_dict(ckpt["model_config"]), TrainConfig.from_dict(ckpt["train_config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{last}: not a checkpoint of train.train ({e})") from None
        print(f"resuming {last} at step {ckpt['step']} ({tcfg.dataset})", file=sys.stderr)
    torch.manual_seed(tcfg.seed)
    model = SceneModel(cfg).to(device, memory_format=torch.channels_last)  # faster convs
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    state = {"step": 0, "samples": 0, "elapsed": 0.0, "seed": tcfg.seed}
    meta = {"command": None, "recipe": None, "stage": None, **(record or {}), "init_from": None}
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = {k: ckpt[k] for k in state}
        meta = {k: ckpt.get(k) for k in meta}
    elif init_from:
        source, src = load_checkpoint(init_from)
        grow_from(model, source)
        meta["init_from"] = provenance(init_from, src)
        print(f"starting from the weights of {init_from} (step {src['step']})", file=sys.stderr)
    return cfg, tcfg, model, opt, state, meta


def schedules(tcfg: TrainConfig, state: dict, fraction: float) -> dict:
    """The scheduled values where training is."""
    return {"lr": learning_rate(tcfg, state["step"], fraction),
            "a_equiv": equiv_weight(tcfg, state["samples"]),
            "char_dropout": char_dropout(tcfg, state["samples"])}


def train_step(losses_of, opt, tcfg: TrainConfig, shards: list[tuple], scheduled: dict) -> dict:
    """One optimiser step on eq. 4 over this process's shards of the batch, each (x1, x2, keep_char);
    -> the losses of the shards, concatenated or averaged. losses_of: distributed.wrap(model), whose
    backward averages the gradients over the ranks."""
    for group in opt.param_groups:
        group["lr"] = scheduled["lr"]
    opt.zero_grad(set_to_none=True)
    parts = []
    for n, (x1, x2, keep) in enumerate(shards):
        last = n == len(shards) - 1
        sync = contextlib.nullcontext() if last or not hasattr(losses_of, "no_sync") else losses_of.no_sync()
        with sync:
            losses = losses_of(x1, x2, keep)
            total = losses["scene"] + scheduled["a_equiv"] * losses["equiv"] + tcfg.alpha_inv * losses["inv"]  # eq. 4
            (total / len(shards)).backward()
        parts.append(losses)
    opt.step()
    return {k: torch.cat([p[k] for p in parts]) if parts[0][k].ndim else torch.stack([p[k] for p in parts]).mean()
            for k in parts[0]}


def train(out: Path, cfg: ModelConfig, tcfg: TrainConfig, budget: Budget, init_from: Path | None = None,
          record: dict | None = None, sample_every: float = 300, data_dir: Path | None = None,
          preview: Callable[[SceneModel], None] | None = None) -> dict:
    """Train one stage into out/ and return its last checkpoint. init_from: a checkpoint whose
    weights a new run starts from (its own step count, schedule and optimiser; extra decoder
    layers start as the identity). record: what the checkpoint says made it (command, recipe,
    stage). preview(model): called with the samples, every sample_every seconds. Under torchrun,
    one rank of a data-parallel run (train/distributed.py)."""
    ranks = distributed.start()
    try:
        return run(out, cfg, tcfg, budget, init_from, record, sample_every, data_dir, preview, ranks)
    finally:
        distributed.stop(ranks)


def run(out: Path, cfg: ModelConfig, tcfg: TrainConfig, budget: Budget, init_from: Path | None,
        record: dict | None, sample_every: float, data_dir: Path | None, preview, ranks: distributed.Ranks) -> dict:
    device = distributed.device(ranks)
    cfg, tcfg, model, opt, state, meta = start(out, cfg, tcfg, init_from, record, device)
    tcfg = check_shards(tcfg, ranks)
    losses_of = distributed.wrap(model, ranks)
    mine = range(ranks.rank * tcfg.shards // ranks.world, (ranks.rank + 1) * tcfg.shards // ranks.world)
    per_shard = tcfg.batch // tcfg.shards
    footage = {"size": cfg.image_size, "crop": tcfg.video_crop, "max_gap": tcfg.max_gap}
    train_set = pair_source(tcfg.dataset, "train", tcfg.n_backgrounds, tcfg.seed, tcfg.characters, data_dir, **footage)
    val_set = pair_source(tcfg.dataset, "val", VAL_BACKGROUNDS, tcfg.seed, tcfg.characters, data_dir, **footage)
    val_x1, val_x2, _ = val_set.sample_pairs(256, np.random.default_rng([tcfg.seed, 1]))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def checkpoint() -> dict:
        if ranks.distributed:  # raises when the ranks' weights have drifted apart
            row.update(processes=ranks.world, ranks_max_abs_diff=distributed.check_in_sync(model, ranks))
        saved = {"model": model.state_dict(), "optimizer": opt.state_dict(), **state,
                 "model_config": cfg.to_dict(), "train_config": asdict(tcfg), "budget": asdict(budget), **meta}
        if ranks.main:
            save_checkpoint(out / "last.pt", saved)
        return saved

    @torch.no_grad()
    def validate() -> float:
        with autocast:
            return float(np.mean([model.losses(a.to(device), b.to(device))["scene"].item()
                                  for a, b in zip(val_x1.split(64), val_x2.split(64))]))

    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("a") if ranks.main else None
    bar = tqdm(initial=state["step"], unit="step", dynamic_ncols=True, disable=not ranks.main,
               mininterval=1 if sys.stderr.isatty() else 60)
    last_sample = time.perf_counter()
    row = {}
    while not budget.done(state):
        t0 = time.perf_counter()
        scheduled = schedules(tcfg, state, budget.fraction(state))
        max_gap = 1 if near_pairs(tcfg, state["samples"]) else None
        shards, motions = [], []
        for shard in mine:
            rng = shard_rng(tcfg, state["step"], shard)  # resumable stream
            x1, x2, tx = train_set.sample_pairs(per_shard, rng, max_gap=max_gap, augment=True, recolour=tcfg.recolour)
            keep = keep_character(tcfg, rng, per_shard, scheduled["char_dropout"], device)
            shards.append(tuple(x.to(device, memory_format=torch.channels_last) if x.ndim == 4 else x.to(device)
                                for x in (x1, x2, keep)))
            motions.append(tx)
        t_data = time.perf_counter() - t0
        losses = train_step(losses_of, opt, tcfg, shards, scheduled)
        # every rank takes the same schedule and sampling decisions: from the slowest clock
        dt, sample_due = distributed.agree([time.perf_counter() - t0,
                                            float(time.perf_counter() - last_sample > sample_every)], ranks)
        state.update(step=state["step"] + 1, samples=state["samples"] + tcfg.batch, elapsed=state["elapsed"] + dt)

        tx = None if motions[0] is None else np.concatenate(motions)
        spread, corr = theta_stats(losses["theta"].cpu(), tx)
        row = {"step": state["step"], "samples": state["samples"], "elapsed": round(state["elapsed"], 2),
               **{k: losses[k].item() for k in ("scene", "equiv", "inv")}, **scheduled,
               "tz_spread": spread, "tz_corr": corr, "samples_per_s": tcfg.batch / dt, "data_fraction": t_data / dt}
        bar.update(1)
        bar.set_postfix(scene=f"{row['scene']:.4f}", equiv=f"{row['equiv']:.3f}", inv=f"{row['inv']:.3f}",
                        tz=f"{spread:.3f}" + ("" if corr is None else f"/{corr:+.2f}"),
                        sps=f"{row['samples_per_s']:.0f}")
        if sample_due or budget.done(state):
            last_sample = time.perf_counter()
            if ranks.main:
                row["val_scene"] = validate()
                x1, x2 = (torch.cat([shard[k] for shard in shards]) for k in (0, 1))
                grid_image([x1, x2, losses["render"], *decomposition(model, x1, autocast)], out / "samples.png")
                if preview:
                    with autocast:
                        preview(model)
            checkpoint()
            if ranks.main:
                tqdm.write(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
        if log and (state["step"] % 20 == 0 or "val_scene" in row):
            log.write(json.dumps(row) + "\n")
            log.flush()
    bar.close()
    if ranks.main:
        print(f"done: {state['step']} steps, {state['samples']} samples, {state['elapsed'] / 60:.1f} min"
              + (f", {ranks.world} processes" if ranks.distributed else ""), file=sys.stderr)
    return checkpoint()


def dataset_name(text: str) -> str:
    if text in DATASETS or (text.startswith(VIDEOS) and len(text) > len(VIDEOS)):
        return text
    raise argparse.ArgumentTypeError(f"got {text!r}, expected one of {', '.join(DATASETS)} or {VIDEOS}DIR")


def add_config_options(p: argparse.ArgumentParser, config) -> None:
    """One --option per field of a config dataclass, with its default."""
    for f, v in asdict(config).items():
        name = "--" + f.replace("_", "-")
        if isinstance(v, bool):
            p.add_argument(name, action=argparse.BooleanOptionalAction, default=v)
        elif f == "dataset":
            p.add_argument(name, type=dataset_name, default=v, metavar="{" + ",".join(DATASETS) + f",{VIDEOS}DIR}}")
        elif f == "video_crop":
            p.add_argument(name, type=parse_crop, default=v, metavar="X,Y,W,H")
        else:
            p.add_argument(name, type=type(v), default=v)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, help="the schedule's length in steps (total, across resumes)")
    p.add_argument("--minutes", type=float, help="the schedule's length in minutes (total, across resumes)")
    p.add_argument("--stop-at", type=int, help="stop after this many steps, part way through the schedule")
    p.add_argument("--sample-every", type=float, default=300, help="seconds between samples/val")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", type=Path, help="the data directory holding mnist/ and lpc/ (train/data_dir.py)")
    p.add_argument("--init-from", type=Path, help="start from this checkpoint's weights (a new run: "
                   "own step count, schedule and optimiser; extra decoder layers start as identity)")
    add_config_options(p, ModelConfig())
    add_config_options(p, TrainConfig())
    return p


def configs(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs that parsed options give."""
    return (ModelConfig(**{f.name: getattr(args, f.name) for f in fields(ModelConfig)}),
            TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)}))


def main(argv=None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.minutes is None and args.steps is None:
        p.error("give a budget: --steps and/or --minutes")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, tcfg = configs(args)
    command = "python -m train.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        train(args.out, cfg, tcfg, Budget(args.steps, args.minutes, args.stop_at), args.init_from,
              {"command": command}, args.sample_every, args.data_dir)
    except EqsdkError as e:  # a missing data set or an unreadable checkpoint
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
