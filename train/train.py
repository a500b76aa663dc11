"""Train the scene model with eq. 4: L_scene + a_equiv L_equiv + a_inv L_inv, on Moving MNIST
(--dataset mnist, the default) or the LPC sprites on white (sprites) or on diamond backgrounds
(sprites-bg, --n-backgrounds of them for training); see train/datasets.py.

    python -m train.train --out runs/mnist --minutes 100
    python -m train.train --out runs/sprites --dataset sprites --minutes 100
    python -m train.train --out runs/sprites-bg --dataset sprites-bg --n-backgrounds 1000 --minutes 100

Runs on CUDA when present, else CPU (bf16 autocast where the CPU has it). Resumes from
OUT/last.pt when it exists. Every --sample-every seconds it writes OUT/samples.png (rows: x1, x2,
render, background part alone g(f_b(x1)), character part alone g(f_c(x1))) and a validation loss
on the validation split (unseen backgrounds and digits or characters); OUT/log.jsonl keeps every
figure. T^Z is monitored by the spread of its theta over the batch and, where the dataset knows the
motion T^X (mnist), by their correlation.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from train.datasets import DATASETS, VAL_BACKGROUNDS, pair_source
from train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from train.model import ModelConfig, SceneModel, grow_from, random_rigid
from train.moving_mnist import affine_inverse


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    batch: int = 64
    lr: float = 1e-3
    lr_final: float = 0.05  # cosine decay to this fraction of lr over the budget
    warmup_steps: int = 200
    alpha_equiv: float = 0.1
    alpha_inv: float = 3.0  # strong: a moving digit in f_b must cost more than it helps
    char_dropout: float = 0.5  # share of renders made from f_b alone at the start ...
    char_dropout_until: int = 300_000  # ... falling linearly to 0 at this many samples
    equiv_start: int = 150_000  # samples before L_equiv is used (T^Z only moves once g renders)
    equiv_ramp: int = 110_000  # samples over which alpha_equiv then ramps up from 0
    near_until: int = 100_000  # samples during which pairs are adjacent frames only
    alpha_warp: float = 0.0  # weight of the self-warp terms (model.losses; 0: off, as in the paper)
    warp_degrees: float = 45.0  # the self-warps: rotations up to this many degrees ...
    warp_shift: float = 0.4  # ... and shifts up to this fraction of the half-width, per axis
    alpha_distil: float = 0.0  # weight of L_distil (model.losses; 0: off, as in the paper) ...
    distil_pairs: int = 16  # ... on this many pairs of each batch ...
    distil_steps: int = 20  # ... whose render-optimal theta is this many Adam steps from T^Z's ...
    distil_scan: float = 0.0  # ... after trying it turned further by up to this many degrees
    n_digits: int = 1
    n_backgrounds: int = 64
    augment: bool = True  # dihedral + RGB permutation of training backgrounds
    recolour: float = 0.0  # share of training backgrounds whose colours are redrawn (with augment)
    start_turn: float = 0.0  # mnist: training videos start turned by up to +-this many degrees
    train_only: str = ""  # comma-separated networks to train (e.g. "t_z"); the others frozen
    bf16: bool = True  # autocast on CPU where supported (ignored on CUDA, which uses bf16 too)
    dataset: str = "mnist"  # one of datasets.DATASETS (checkpoints from before it are mnist)
    characters: int = 0  # sprites: only the first N characters of each split (0: all; for tests)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, help="time budget (total, across resumes)")
    p.add_argument("--steps", type=int, help="step budget (total, across resumes)")
    p.add_argument("--sample-every", type=float, default=300, help="seconds between samples/val")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--init-from", type=Path, help="start from this checkpoint's weights (a new run: "
                   "own step count, schedule and optimiser; extra decoder layers start as identity)")
    for f, v in asdict(ModelConfig()).items():
        if isinstance(v, bool):
            p.add_argument("--" + f.replace("_", "-"), action=argparse.BooleanOptionalAction, default=v)
        else:
            p.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    for f, v in asdict(TrainConfig()).items():
        if isinstance(v, bool):
            p.add_argument("--" + f.replace("_", "-"), action=argparse.BooleanOptionalAction, default=v)
        elif f == "dataset":
            p.add_argument("--dataset", choices=DATASETS, default=v)
        else:
            p.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    args = p.parse_args(argv)
    if args.minutes is None and args.steps is None:
        p.error("give a budget: --minutes and/or --steps")
    unknown = set(filter(None, args.train_only.split(","))) - {"f_c", "f_b", "t_z", "g"}
    if unknown:
        p.error(f"--train-only {args.train_only!r}: expected names among f_c, f_b, t_z, g")
    command = "python -m train.train " + shlex.join(sys.argv[1:] if argv is None else argv)

    args.out.mkdir(parents=True, exist_ok=True)
    last = args.out / "last.pt"
    ckpt = read_checkpoint(last) if last.exists() else None
    init_from = None  # provenance of the weights a run started from
    if ckpt:  # a resumed run keeps its configuration
        cfg, tcfg = ModelConfig.from_dict(ckpt["model_config"]), TrainConfig(**ckpt["train_config"])
        init_from = ckpt.get("init_from")
        print(f"resuming {last} at step {ckpt['step']} ({tcfg.dataset})", file=sys.stderr)
    else:
        cfg = ModelConfig(**{f: getattr(args, f) for f in asdict(ModelConfig())})
        tcfg = TrainConfig(**{f: getattr(args, f) for f in asdict(TrainConfig())})
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device()
    torch.manual_seed(tcfg.seed)
    model = SceneModel(cfg).to(device, memory_format=torch.channels_last)  # faster convs
    if tcfg.train_only:
        model.requires_grad_(False)
        for name in tcfg.train_only.split(","):
            getattr(model, name).requires_grad_(True)
    # Only what is trained: a frozen network then costs a forward pass, and for g a backward to
    # its input.
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=tcfg.lr)
    state = {"step": 0, "samples": 0, "elapsed": 0.0, "seed": tcfg.seed}
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = {k: ckpt[k] for k in state}
    elif args.init_from:
        source, src = load_checkpoint(args.init_from)
        grow_from(model, source)
        init_from = {"path": str(args.init_from), "command": src.get("command"), "step": src["step"],
                     "samples": src["samples"], "minutes": round(src["elapsed"] / 60, 1),
                     "init_from": src.get("init_from")}
        print(f"starting from the weights of {args.init_from} (step {src['step']})", file=sys.stderr)

    train_set = pair_source(tcfg.dataset, "train", tcfg.n_backgrounds, tcfg.seed, tcfg.n_digits, tcfg.characters,
                            tcfg.start_turn)
    val_set = pair_source(tcfg.dataset, "val", VAL_BACKGROUNDS, tcfg.seed, tcfg.n_digits, tcfg.characters)
    val_x1, val_x2, _ = val_set.sample_pairs(256, np.random.default_rng([tcfg.seed, 1]))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=tcfg.bf16 or device.type == "cuda")

    def budget_fraction() -> float:
        parts = []
        if args.minutes:
            parts.append(state["elapsed"] / (60 * args.minutes))
        if args.steps:
            parts.append(state["step"] / args.steps)
        return max(parts)

    def validate() -> float:
        model.eval()
        with torch.no_grad(), autocast:
            losses = [model.losses(a.to(device), b.to(device))["scene"].item()
                      for a, b in zip(val_x1.split(64), val_x2.split(64))]
        model.train()
        return float(np.mean(losses))

    log = (args.out / "log.jsonl").open("a")
    bar = tqdm(total=None, initial=state["step"], unit="step", dynamic_ncols=True,
               mininterval=1 if sys.stderr.isatty() else 60)
    last_sample = time.perf_counter()
    while budget_fraction() < 1:
        t0 = time.perf_counter()
        rng = np.random.default_rng([tcfg.seed, state["step"]])  # resumable stream
        near = state["samples"] < tcfg.near_until
        x1, x2, tx = train_set.sample_pairs(tcfg.batch, rng, max_gap=1 if near else None,
                                            augment=tcfg.augment, recolour=tcfg.recolour)
        x1 = x1.to(device, memory_format=torch.channels_last)
        x2 = x2.to(device, memory_format=torch.channels_last)
        t_data = time.perf_counter() - t0

        frac = budget_fraction()
        warm = min(1.0, (state["step"] + 1) / tcfg.warmup_steps)
        lr = tcfg.lr * warm * (tcfg.lr_final + (1 - tcfg.lr_final) * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        a_equiv = tcfg.alpha_equiv * min(1.0, max(0.0, state["samples"] - tcfg.equiv_start) / tcfg.equiv_ramp)
        p_drop = tcfg.char_dropout * max(0.0, 1 - state["samples"] / tcfg.char_dropout_until)
        keep = (torch.rand(tcfg.batch, device=device) >= p_drop).float()
        warp = None
        if tcfg.alpha_warp:
            warp = random_rigid(tcfg.batch, tcfg.warp_degrees, tcfg.warp_shift,
                                torch.Generator().manual_seed(int(rng.integers(2**63)))).to(device)
        distil = (tcfg.distil_pairs, tcfg.distil_steps, tcfg.distil_scan) if tcfg.alpha_distil else (0, 0, 0.0)
        with autocast:
            out = model.losses(x1, x2, keep, warp, distil)
        total = out["scene"] + a_equiv * out["equiv"] + tcfg.alpha_inv * out["inv"]
        if tcfg.alpha_distil:
            total = total + tcfg.alpha_distil * out["distil"]
        if warp is not None:
            total = total + tcfg.alpha_warp * (out["warp_theta"] + out["warp_equiv"])
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

        dt = time.perf_counter() - t0
        state["step"] += 1
        state["samples"] += tcfg.batch
        state["elapsed"] += dt
        spread, corr = theta_stats(out["theta"].cpu(), tx)
        record = {"step": state["step"], "samples": state["samples"], "elapsed": round(state["elapsed"], 2),
                  "scene": out["scene"].item(), "equiv": out["equiv"].item(), "inv": out["inv"].item(),
                  "lr": lr, "a_equiv": a_equiv, "char_dropout": p_drop, "tz_spread": spread, "tz_corr": corr,
                  "samples_per_s": tcfg.batch / dt, "data_fraction": t_data / dt,
                  **{k: out[k].item() for k in ("warp_theta", "warp_equiv", "distil") if k in out}}
        bar.update(1)
        extra = {"warp": f"{record['warp_theta']:.4f}"} if warp is not None else {}
        if "distil" in record:
            extra["distil"] = f"{record['distil']:.5f}"
        bar.set_postfix(scene=f"{record['scene']:.4f}", equiv=f"{record['equiv']:.3f}",
                        inv=f"{record['inv']:.3f}", **extra,
                        tz=f"{spread:.3f}" + ("" if corr is None else f"/{corr:+.2f}"),
                        sps=f"{record['samples_per_s']:.0f}")
        if time.perf_counter() - last_sample > args.sample_every or budget_fraction() >= 1:
            last_sample = time.perf_counter()
            record["val_scene"] = validate()
            grid_image([x1, x2, out["render"], *decomposition(model, x1, autocast)],
                       args.out / "samples.png")
            save_checkpoint(last, {"model": model.state_dict(), "optimizer": opt.state_dict(), **state, "model_config": cfg.to_dict(), "train_config": asdict(tcfg), "command": command, "init_from": init_from})
            tqdm.write(json.dumps({k: round(v, 5) if isinstance(v, float) else v
                                   for k, v in record.items()}))
        if state["step"] % 20 == 0 or "val_scene" in record:
            log.write(json.dumps(record) + "\n")
            log.flush()
    save_checkpoint(last, {"model": model.state_dict(), "optimizer": opt.state_dict(), **state, "model_config": cfg.to_dict(), "train_config": asdict(tcfg), "command": command, "init_from": init_from})
    bar.close()
    print(f"done: {state['step']} steps, {state['samples']} samples, {state['elapsed'] / 60:.1f} min",
          file=sys.stderr)


if __name__ == "__main__":
    main()
