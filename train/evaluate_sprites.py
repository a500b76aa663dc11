"""Evaluate a sprites checkpoint by the analogy test of §4.4 on test characters (never seen in
training). Writes OUT/metrics.json, OUT/metrics.md, OUT/boxplot.png (Fig. 6/7, Fig. 9 with
backgrounds) and OUT/analogies.png (Fig. 4/5).

    python -m train.evaluate_sprites runs/sprites/last.pt --out results/sprites
    python -m train.evaluate_sprites runs/sprites/last.pt --out results/sprites/test-layers --split test-layers
    python -m train.evaluate_sprites runs/sprites-bg/last.pt --out results/sprites-bg --backgrounds
    python -m train.evaluate_sprites runs/sprites-bg/last.pt --out results/ours-bg --canvas grey

--split: paper, the 100 test characters of the paper's 672-character protocol (train/lpc.py); test,
the open data set's characters whose layer combinations training never sees; test-layers, its
characters each wearing a layer training never sees (train/lpc_open.py).

Each example (sample_analogies): test characters A != B, one animation and viewpoint, frames
i != j; A and B on the plain canvas (white, or grey: 'Ours-BG'), or with --backgrounds each on its
own random test background (100 unseen ones).
  Analogy           h(B_i, A_i, A_j, B_i) vs the true B_j
  B_i unchanged     B_i vs B_j (baseline: the input returned as it is)
  Background alone  B's background (the plain canvas without --backgrounds) vs B_j (baseline)
  Reconstruction    h(B_i, B_i, B_j, B_i) vs B_j: the model on B's own motion, the ceiling of its
                    analogies (not a baseline)
MSE is per pixel: the mean over pixels and RGB channels of squared differences of 0-255 values
(renders clamped to [0, 1] first, not rounded). With --backgrounds each is also reported on two
regions, with R = mask(B_i) | mask(B_j): Background-only, the pixels outside R, and
Character-only, the pixels inside R (the mean is over that region's pixels only).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import CSS4_COLORS, to_rgb  # noqa: E402

from train import lpc, lpc_open  # noqa: E402
from train.datasets import load_sprites  # noqa: E402
from train.evaluate import summary  # noqa: E402
from train.checkpoint import load_checkpoint  # noqa: E402

CANVASES = {"white": lpc.WHITE, "grey": to_rgb(CSS4_COLORS["gray"])}  # grey: 128/255 (§4.4, 'Ours-BG')
METHODS = {"analogy": "Analogy", "unchanged": "B_i unchanged", "background": "Background alone",
           "reconstruction": "Reconstruction"}
BASELINES = ("unchanged", "background")
REGIONS = {"whole": "whole image", "background_only": "Background-only", "character_only": "Character-only"}
GROUPS = (*lpc.ANIMATIONS, "all")
SPLITS = ("paper", "test", "test-layers")
SPEARS, BOWS = ("spear", "spear_large"), ("bow", "greatbow", "recurvebow")  # option names, both data sets
# Targets of the shipped sprites models: ratios of mean MSEs over the whole image, every animation.
TARGETS = {"plain": {"analogy_vs_unchanged": 0.5, "reconstruction_vs_unchanged": 0.35},
           # with backgrounds, also: Analogy Background-only <= 0.3 x Analogy whole image
           "backgrounds": {"analogy_vs_unchanged": 0.6, "background_only_vs_whole": 0.3}}
CHUNK = 250  # analogies drawn and rendered at a time


def region_mse(pred: torch.Tensor, truth: torch.Tensor, region: torch.Tensor | None = None) -> np.ndarray:
    """Per-example MSE in 0-255 units over RGB and the pixels where region (B, 1, H, W) is 1
    (all pixels if None): images (B, 3, H, W) in [0, 1] -> (B,)."""
    sq = ((pred - truth) * 255).square()
    if region is None:
        return sq.mean(dim=(1, 2, 3)).numpy()
    return ((sq * region).sum(dim=(1, 2, 3)) / (3 * region.sum(dim=(1, 2, 3)))).numpy()


@torch.no_grad()
def evaluate(model, sprites: lpc.Sprites, count: int, rng: np.random.Generator, with_backgrounds: bool,
             device: torch.device) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """Per-example MSEs {method: {region: (count,)}} and each example's animation index (count,)."""
    per = defaultdict(lambda: defaultdict(list))
    animation = []
    for start in range(0, count, CHUNK):
        a = sprites.sample_analogies(min(CHUNK, count - start), rng, with_backgrounds)
        if with_backgrounds:
            background = sprites.backgrounds[torch.from_numpy(a.background_b)]  # (B, 3, 64, 64)
        else:
            background = torch.tensor(sprites.canvas).view(1, 3, 1, 1).expand_as(a.b2)
        a1, a2, b1, b2 = (x.to(device) for x in (a.a1, a.a2, a.b1, a.b2))
        images = {
            "analogy": model(b1, a1, a2, b1).float().clamp(0, 1).cpu(),  # h(B_i, A_i, A_j, B_i)
            "unchanged": a.b1,
            "background": background,
            "reconstruction": model(b1, b1, b2, b1).float().clamp(0, 1).cpu(),
        }
        char = (a.masks[:, 2] + a.masks[:, 3] > 0).float()  # (B, 1, 64, 64): mask(B_i) | mask(B_j)
        for method, image in images.items():
            per[method]["whole"].append(region_mse(image, a.b2))
            if with_backgrounds:
                per[method]["background_only"].append(region_mse(image, a.b2, 1 - char))
                per[method]["character_only"].append(region_mse(image, a.b2, char))
        animation.append(a.animation.numpy())
    per_example = {m: {r: np.concatenate(v) for r, v in regions.items()} for m, regions in per.items()}
    return per_example, np.concatenate(animation)


def by_group(values: np.ndarray, animation: np.ndarray) -> dict[str, np.ndarray]:
    """One array per animation, and 'all'."""
    out = {name: values[animation == k] for k, name in enumerate(lpc.ANIMATIONS)}
    out["all"] = values
    return out


def targets(mse: dict, with_backgrounds: bool) -> dict:
    """Each target with its measured ratio(s) and whether it is met."""
    bars = TARGETS["backgrounds" if with_backgrounds else "plain"]
    out = {}
    for method in ("analogy", "reconstruction"):
        name = f"{method}_vs_unchanged"
        if name not in bars:
            continue
        per_animation = {}
        for group in lpc.ANIMATIONS:
            ours, base = mse[method]["whole"][group], mse["unchanged"]["whole"][group]
            ratio = ours["mean"] / base["mean"] if ours and base else None
            per_animation[group] = {"ratio": ratio, "met": ratio is not None and ratio <= bars[name]}
        out[name] = {"bar": bars[name], "per_animation": per_animation,
                     "met": all(v["met"] for v in per_animation.values()),
                     "what": f"every animation: mean {METHODS[method]} MSE <= bar x mean 'B_i unchanged' MSE "
                             "(whole image)"}
    if with_backgrounds:
        ratio = mse["analogy"]["background_only"]["all"]["mean"] / mse["analogy"]["whole"]["all"]["mean"]
        out["background_only_vs_whole"] = {
            "bar": bars["background_only_vs_whole"], "ratio": ratio,
            "met": ratio <= bars["background_only_vs_whole"],
            "what": "all animations: mean Analogy MSE on Background-only <= bar x on the whole image"}
    return out


def plot_boxes(per_example: dict, animation: np.ndarray, title: str, path: Path) -> None:
    """Fig. 7 (Fig. 9 with backgrounds): per animation and overall, the analogy beside both
    baselines; one panel per region."""
    regions = list(per_example["analogy"])
    methods = ["analogy", *BASELINES]
    colours = ["tab:blue", "tab:grey", "tab:orange"]
    fig, axes = plt.subplots(len(regions), 1, figsize=(10, 3.6 * len(regions)), squeeze=False)
    width = 0.8 / len(methods)
    for ax, region in zip(axes[:, 0], regions):
        for m, (method, colour) in enumerate(zip(methods, colours)):
            groups = by_group(per_example[method][region], animation)
            keep = [g for g in GROUPS if len(groups[g])]
            pos = [GROUPS.index(g) + (m - (len(methods) - 1) / 2) * width for g in keep]
            ax.boxplot([groups[g] for g in keep], positions=pos, widths=width * 0.9, showfliers=False,
                       patch_artist=True, boxprops={"facecolor": colour, "alpha": 0.6},
                       medianprops={"color": "black"})
            ax.plot([], [], color=colour, lw=8, alpha=0.6, label=METHODS[method])
        ax.set_xticks(range(len(GROUPS)), GROUPS)
        ax.set_ylabel("per-pixel MSE (0-255)")
        ax.set_title(f"{title}: {REGIONS[region]}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def showcase(sprites: lpc.Sprites, rng: np.random.Generator) -> list[dict]:
    """The cases of analogies.png (Fig. 4): one per animation, and for thrust and shoot a driving
    character A holding the weapon (a spear, a bow) that B lacks; for shoot also the reverse (Fig. 4c).
    Falls back to any two characters where the split (a subset) has no such pair."""
    weapon = np.array([sprites.option(k, "weapon") for k in range(len(sprites))])
    spear, bow = np.isin(weapon, SPEARS), np.isin(weapon, BOWS)
    everyone = np.arange(len(sprites))

    def pick(a_ok: np.ndarray, b_ok: np.ndarray) -> tuple[int, int]:
        a_pool = everyone[a_ok] if a_ok.any() else everyone
        a = int(rng.choice(a_pool))
        b_pool = everyone[b_ok & (everyone != a)]
        if not len(b_pool):
            b_pool = everyone[everyone != a]
        return a, int(rng.choice(b_pool))

    anyone = np.ones(len(sprites), bool)
    cases = [("spellcast", "down", anyone, anyone, ""),
             ("thrust", "right", spear, ~spear, "A has a spear, B does not"),
             ("walk", "left", anyone, anyone, ""),
             ("slash", "right", anyone, anyone, ""),
             ("shoot", "right", bow, ~bow, "A has a bow, B does not"),
             ("shoot", "left", ~bow, bow, "B has a bow, A does not")]
    out = []
    for animation, viewpoint, a_ok, b_ok, note in cases:
        a, b = pick(a_ok, b_ok)
        out.append({"animation": animation, "viewpoint": viewpoint, "a": a, "b": b, "note": note})
    return out


@torch.no_grad()
def transfer_rows(model, sprites: lpc.Sprites, case: dict, with_backgrounds: bool, rng: np.random.Generator,
                  device: torch.device) -> tuple[list[torch.Tensor], float]:
    """B's true sequence, A's, and B driven by A: h(B_0, A_0, A_k, B_0) for every frame k (each
    (n, 3, 64, 64)), and the mean MSE of the driven frames k >= 1."""
    seq = {who: lpc.to_tensor(sprites.sequence(case[who], case["animation"], case["viewpoint"]))
           for who in ("a", "b")}
    n = len(seq["a"])
    if with_backgrounds:
        bg = {who: sprites.backgrounds[int(rng.integers(len(sprites.backgrounds)))][None] for who in seq}
    else:
        bg = {who: sprites.canvas for who in seq}
    a, b = (lpc.composite(seq[w], bg[w]) for w in ("a", "b"))
    b0, a0 = b[:1].expand(n, -1, -1, -1), a[:1].expand(n, -1, -1, -1)
    driven = model(b0.to(device), a0.to(device), a.to(device), b0.to(device)).float().clamp(0, 1).cpu()
    return [b, a, driven], float(region_mse(driven[1:], b[1:]).mean())


def mosaic(rows: list[torch.Tensor], columns: int = max(lpc.FRAMES_PER_ANIMATION), gap: int = 2) -> np.ndarray:
    """Rows of frames (n, 3, 64, 64) -> one (H, W, 3) image with light-grey gaps and empty cells."""
    s = lpc.CELL + gap
    image = np.full((len(rows) * s - gap, columns * s - gap, 3), 0.8, np.float32)
    for r, frames in enumerate(rows):
        for c, frame in enumerate(frames):
            image[r * s:r * s + lpc.CELL, c * s:c * s + lpc.CELL] = frame.permute(1, 2, 0).numpy()
    return image


def plot_analogies(model, sprites: lpc.Sprites, with_backgrounds: bool, seed: int, title: str,
                   device: torch.device, path: Path) -> list[dict]:
    rng = np.random.default_rng([seed, 7])
    cases = showcase(sprites, rng)
    fig, axes = plt.subplots(len(cases), 1, figsize=(11, 3.2 * len(cases)), squeeze=False)
    labels = ["B (truth)", "A (driver)", "B driven by A"]
    for ax, case in zip(axes[:, 0], cases):
        rows, err = transfer_rows(model, sprites, case, with_backgrounds, rng, device)
        ax.imshow(mosaic(rows), interpolation="nearest")
        ax.set_yticks([(k + 0.5) * (lpc.CELL + 2) for k in range(3)], labels, fontsize=9)
        ax.set_xticks([(k + 0.5) * (lpc.CELL + 2) for k in range(len(rows[0]))], range(len(rows[0])), fontsize=7)
        describe = sprites.describe
        note = f" ({case['note']})" if case["note"] else ""
        ax.set_title(f"{case['animation']}, {case['viewpoint']}{note}; frame k = h(B_0, A_0, A_k, B_0), "
                     f"MSE k>=1: {err:.1f}\nA: {describe(case['a'])}\nB: {describe(case['b'])}", fontsize=7)
        case.update(mse=err, a_attributes=describe(case["a"]), b_attributes=describe(case["b"]))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))  # room for the suptitle
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return cases


def markdown(metrics: dict) -> str:
    mse, regions = metrics["mse"], list(metrics["mse"]["analogy"])
    cell = lambda s: f"{s['mean']:.1f} ± {s['ci95']:.1f}" if s else "–"  # noqa: E731
    lines = [f"{metrics['setting']}; {metrics['examples']} analogies on the {metrics['characters']} characters "
             f"of the {metrics['split']} split; per-pixel MSE of 0-255 values, mean ± 95% CI.", "",
             "| | " + " | ".join(GROUPS) + " |", "|---" * (len(GROUPS) + 1) + "|"]
    for method, label in METHODS.items():
        name = label if method in ("analogy", "reconstruction") else f"*{label}* (baseline)"
        lines.append(f"| {name} | " + " | ".join(cell(mse[method]["whole"][g]) for g in GROUPS) + " |")
    if len(regions) > 1:
        lines += ["", "| all animations | " + " | ".join(REGIONS[r] for r in regions) + " |",
                  "|---" * (len(regions) + 1) + "|"]
        lines += [f"| {label} | " + " | ".join(cell(mse[m][r]["all"]) for r in regions) + " |"
                  for m, label in METHODS.items()]
        lines += ["", "| Analogy | " + " | ".join(GROUPS) + " |", "|---" * (len(GROUPS) + 1) + "|"]
        lines += [f"| {REGIONS[r]} | " + " | ".join(cell(mse["analogy"][r][g]) for g in GROUPS) + " |"
                  for r in regions]
    t = metrics["targets"]
    lines += ["", "| target | measured | bar | met |", "|---|---|---|---|"]
    for method in ("analogy", "reconstruction"):
        target = t.get(f"{method}_vs_unchanged")
        for name, v in (target["per_animation"] if target else {}).items():
            ratio = "–" if v["ratio"] is None else f"{v['ratio']:.3f}"
            lines.append(f"| {name}: {METHODS[method]} / B_i unchanged | {ratio} | ≤ {target['bar']} | "
                         f"{'yes' if v['met'] else 'no'} |")
    if "background_only_vs_whole" in t:
        v = t["background_only_vs_whole"]
        lines.append(f"| Analogy: Background-only / whole image | {v['ratio']:.3f} | ≤ {v['bar']} | "
                     f"{'yes' if v['met'] else 'no'} |")
    floor = [mse["reconstruction"]["whole"][g]["mean"] / mse["unchanged"]["whole"][g]["mean"]
             if mse["reconstruction"]["whole"][g] and mse["unchanged"]["whole"][g] else None for g in GROUPS]
    lines += ["", "Reconstruction / B_i unchanged (the model rendering B's own motion: what an analogy "
              "can hardly beat), all animations: " + ", ".join(f"{g} {'–' if r is None else f'{r:.2f}'}"
                                               for g, r in zip(GROUPS, floor)) + "."]
    c = metrics["checkpoint"]
    lines += ["", f"Checkpoint: {c['path']} ({c['dataset']}, step {c['step']}, {c['samples']} samples, "
              f"{c['train_minutes']} min)."]
    return "\n".join(lines) + "\n"


def evaluate_split(model, ckpt: dict, split: str, args, device: torch.device, out: Path) -> dict:
    """Evaluate one split into out/ (metrics.json, metrics.md, boxplot.png, analogies.png); its metrics."""
    t0 = time.time()
    n_backgrounds = lpc.DEFAULT_BACKGROUNDS["test"] if args.backgrounds else 0
    if split == "paper":
        sprites = load_sprites("test", n_backgrounds, args.characters, CANVASES[args.canvas], args.data_dir)
    else:
        sprites = lpc_open.OpenSprites.load(split, n_backgrounds, characters=args.characters,
                                            canvas=CANVASES[args.canvas], data_dir=args.data_dir)
    setting = (f"{n_backgrounds} test backgrounds" if args.backgrounds else f"no backgrounds, {args.canvas} canvas")
    out.mkdir(parents=True, exist_ok=True)
    per_example, animation = evaluate(model, sprites, args.count, np.random.default_rng([args.seed, 6]),
                                      args.backgrounds, device)
    mse = {m: {r: {g: summary(v) for g, v in by_group(values, animation).items()} for r, values in regions.items()}
           for m, regions in per_example.items()}
    dataset = ckpt["train_config"]["dataset"]
    title = f"{dataset} model, {split} split, {setting}"
    plot_boxes(per_example, animation, title, out / "boxplot.png")
    cases = plot_analogies(model, sprites, args.backgrounds, args.seed, title, device, out / "analogies.png")
    goals = targets(mse, args.backgrounds)
    metrics = {
        "split": split, "setting": setting, "characters": len(sprites), "examples": args.count,
        "backgrounds": n_backgrounds, "canvas": None if args.backgrounds else args.canvas,
        "units": "per-pixel MSE: mean over pixels and RGB of squared differences of 0-255 values",
        "methods": {"analogy": "h(B_i, A_i, A_j, B_i) vs B_j", "unchanged": "B_i vs B_j (baseline)",
                    "background": "B's background or plain canvas vs B_j (baseline)",
                    "reconstruction": "h(B_i, B_i, B_j, B_i) vs B_j (the model on B's own motion)"},
        "regions": {r: REGIONS[r] for r in per_example["analogy"]},
        "mse": mse,
        "targets": goals, "all_met": all(v["met"] for v in goals.values()),
        "showcase": cases,
        "checkpoint": {"path": str(args.checkpoint), "dataset": dataset, "step": ckpt["step"],
                       "samples": ckpt["samples"], "train_minutes": round(ckpt["elapsed"] / 60, 1),
                       "command": ckpt.get("command")},
        "command": args.command, "seconds": round(time.time() - t0, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "metrics.md").write_text(markdown(metrics))
    print(json.dumps({"split": split,
                      "analogy": {g: round(s["mean"], 2) for g, s in mse["analogy"]["whole"].items() if s},
                      "unchanged": {g: round(s["mean"], 2) for g, s in mse["unchanged"]["whole"].items() if s},
                      "targets_met": {k: v["met"] for k, v in goals.items()}}, indent=2))
    return metrics


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True,
                   help="folder for the results; with several splits, one sub-folder per split and a "
                        "metrics.json that holds them all")
    p.add_argument("--split", nargs="+", choices=SPLITS, default=["paper"],
                   help="paper: the 672-character protocol's test characters; test, test-layers: the open "
                        "data set's unseen combinations and unseen layers [default: paper]")
    p.add_argument("--count", type=int, default=5000, help="analogies per split (about a fifth per animation)")
    p.add_argument("--backgrounds", action="store_true", help="A and B on random test backgrounds")
    p.add_argument("--canvas", choices=CANVASES, default="white",
                   help="plain canvas without --backgrounds (grey: a sprites-bg model as 'Ours-BG')")
    p.add_argument("--characters", type=int, default=0, help="only the first N test characters (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, help="the data directory holding lpc/ (train/data_dir.py)")
    args = p.parse_args(argv)
    if args.backgrounds and args.canvas != "white":
        p.error("--canvas is the plain canvas used without --backgrounds")
    splits = list(dict.fromkeys(args.split))
    args.command = "python -m train.evaluate_sprites " + shlex.join(sys.argv[1:] if argv is None else argv)
    model, ckpt = load_checkpoint(args.checkpoint)
    if ckpt["train_config"].get("dataset", "mnist") == "mnist":
        raise SystemExit(f"{args.checkpoint}: a Moving MNIST model (train_config.dataset = 'mnist'); "
                         "evaluate it with python -m train.evaluate")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    if len(splits) == 1:
        evaluate_split(model, ckpt, splits[0], args, device, args.out)
        return
    results = {split: evaluate_split(model, ckpt, split, args, device, args.out / split) for split in splits}
    first = results[splits[0]]
    combined = {"splits": results, "all_met": all(m["all_met"] for m in results.values()),
                "checkpoint": first["checkpoint"], "command": args.command}
    (args.out / "metrics.json").write_text(json.dumps(combined, indent=2) + "\n")


if __name__ == "__main__":
    main()
