"""Evaluate a model trained on footage (`eqsdk train FOLDER --out RUN`) without ground truth, on the
held-out videos of its folder (the val split the run validated on). Writes OUT/metrics.json,
OUT/metrics.md and OUT/transfer.png (OUT defaults to RUN/eval).

    python -m train.evaluate_footage runs/mine
    python -m train.evaluate_footage runs/mine --out results/mine --pairs 512 --seed 1

Pairs. Frames i != j of one held-out video, drawn uniformly over the ordered pairs whose gap
|i - j| (in kept frames, as training counts it) lies in a bucket: 1..G (G = the run's max_gap, the
gaps training saw: the headline), 1, 2..G, G+1..2G and 2G+1..4G (larger gaps than training saw).
--pairs per bucket; a bucket with fewer ordered pairs than that takes all of them, one the videos
are too short for is reported empty.

Reconstruction. The model on the video's own motion, h(x_i, x_i, x_j, x_i) vs x_j, beside the
*video frames* baseline x_i vs x_j (frame i returned as it is). MSE is per pixel: the mean over
pixels and RGB of squared differences of 0-255 values (renders clamped to [0, 1] first, not
rounded). PSNR = 10 log10(255² / MSE) of the bucket's mean MSE. The headline is the ratio of mean
MSEs, model / video frames: below 1 the model renders frame j better than frame i stands in for it.

Background stability. Only the character is moved: the render with the motion i -> j,
h(x_i, x_i, x_j, x_i), against the render with the identity motion, h(x_i, x_i, x_i, x_i), and
the mean absolute change per pixel (mean over RGB, 0-255 units) outside and inside the character
region R. R is estimated from the frames alone, not from the model being judged: the pixels where
x_i and x_j differ by more than CHANGE_LEVEL / 255 in some channel (after a 3x3 box average, which
evens out compression noise), dilated by max(1, S / 32) pixels. Outside R the two true frames
agree, so a model that moves only the character changes nothing there; a model that moves the
background with the character (or redraws it) does. Reported: the change outside R, inside R,
their ratio (outside / inside, of the means over the pairs where R and its complement are both
non-empty; none when the change inside is below MIN_CHANGE: the model does not move the character,
and the ratio of two near-zero changes says nothing), and the share of the frame R covers.

Transfer picture. Characters of one held-out video A driven by another held-out video B:
rows B's frames, A's first frame, and h(A_0, B_0, B_k, A_0) for each of B's frames k. A few pairs
of videos; with one held-out video, its middle frame driven by the video from its start.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eqsdk.errors import EqsdkError, InputError
from eqsdk.images import replacing
from train.checkpoint import load_checkpoint
from train.datasets import VIDEOS
from train.evaluate import summary
from train.videos import CHANGE_LEVEL, DEFAULT_MAX_GAP, VideoData, load_videos

DEFAULT_PAIRS = 256  # per gap bucket
CHUNK = 64  # pairs rendered at a time
TRANSFER_CASES = 3  # pairs of videos in transfer.png
TRANSFER_FRAMES = 8  # of the driving video B, evenly spaced
MIN_CHANGE = 0.5  # of 255: a smaller mean change inside R is a character the model does not move


class FootageEvalError(InputError):
    """The run is not one trained on footage, or its footage cannot be evaluated."""


def gap_buckets(max_gap: int) -> list[tuple[int, int]]:
    """(lo, hi) gap ranges, inclusive: the training gaps 1..G first, then 1, 2..G, G+1..2G, 2G+1..4G."""
    g = max_gap
    out = []
    for b in ((1, g), (1, 1), (2, g), (g + 1, 2 * g), (2 * g + 1, 4 * g)):
        if b[0] <= b[1] and b not in out:
            out.append(b)
    return out


def bucket_name(bucket: tuple[int, int]) -> str:
    lo, hi = bucket
    return str(lo) if lo == hi else f"{lo}-{hi}"


def sample_pairs(segments: list[tuple[int, int, int]], bucket: tuple[int, int], count: int,
                 rng: np.random.Generator) -> np.ndarray:
    """(P, 3) rows (video, i, j) of frame indices into the videos' arrays, i != j of one segment
    with lo <= |i - j| <= hi, uniform over the ordered pairs (P <= count; all of them when there
    are no more than count, sorted; none when the segments are too short)."""
    lo, hi = bucket
    cells = [(v, start, stop - start, d) for v, start, stop in segments
             for d in range(lo, min(hi, stop - start - 1) + 1)]  # (video, start, length, gap)
    if not cells:
        return np.zeros((0, 3), np.int64)
    weights = np.array([2 * (length - d) for _, _, length, d in cells], np.float64)  # ordered pairs at gap d
    if weights.sum() <= count:
        rows = [(v, s + i, s + i + d) for v, s, length, d in cells for i in range(length - d)]
        rows += [(v, j, i) for v, i, j in rows]
        return np.array(sorted(rows), np.int64)
    pick = rng.choice(len(cells), size=count, p=weights / weights.sum())
    out = np.empty((count, 3), np.int64)
    for k, c in enumerate(pick):
        v, s, length, d = cells[c]
        i = s + int(rng.integers(length - d))
        out[k] = (v, i, i + d) if rng.random() < 0.5 else (v, i + d, i)
    return out


def frames_at(data: VideoData, rows: np.ndarray, column: int) -> torch.Tensor:
    """(P, 3, S, S) float32 in [0, 1]: frame rows[:, column] of video rows[:, 0]."""
    return torch.from_numpy(np.stack([np.asarray(data.frames[v][k]) for v, k in rows[:, [0, column]]])
                            .astype(np.float32) / 255)


def character_region(x_i: torch.Tensor, x_j: torch.Tensor) -> torch.Tensor:
    """R (B, 1, S, S) of 0/1: where frames (B, 3, S, S) in [0, 1] differ beyond noise, dilated
    (module docstring)."""
    diff = (x_i - x_j).abs().amax(1, keepdim=True) * 255  # (B, 1, S, S), 0-255
    diff = F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=False)
    r = max(1, x_i.shape[-1] // 32)
    return F.max_pool2d((diff > CHANGE_LEVEL).float(), 2 * r + 1, stride=1, padding=r)


def region_mean(values: torch.Tensor, region: torch.Tensor) -> np.ndarray:
    """Per-example mean of values (B, 1, S, S) over the pixels where region is 1; NaN where empty."""
    area = region.sum(dim=(1, 2, 3))
    mean = (values * region).sum(dim=(1, 2, 3)) / area.clamp(min=1)
    return torch.where(area > 0, mean, torch.full_like(mean, float("nan"))).numpy()


@torch.no_grad()
def measure(render, data: VideoData, rows: np.ndarray, device: torch.device) -> dict[str, np.ndarray]:
    """Per-pair figures for rows (P, 3) of (video, i, j): MSEs of the model and the video-frames
    baseline, the background-stability changes outside and inside R and R's share of the frame.
    render(x_c, x_t1, x_t2, x_b) -> (B, 3, S, S): the model h."""
    parts = {k: [] for k in ("model", "video_frames", "outside", "inside", "region")}
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        x_i, x_j = frames_at(data, chunk, 1), frames_at(data, chunk, 2)
        xi, xj = x_i.to(device), x_j.to(device)
        moved = render(xi, xi, xj, xi).float().clamp(0, 1).cpu()  # h(x_i, x_i, x_j, x_i)
        still = render(xi, xi, xi, xi).float().clamp(0, 1).cpu()  # identity motion
        parts["model"].append(((moved - x_j) * 255).square().mean(dim=(1, 2, 3)).numpy())
        parts["video_frames"].append(((x_i - x_j) * 255).square().mean(dim=(1, 2, 3)).numpy())
        change = (moved - still).abs().mean(1, keepdim=True) * 255  # (B, 1, S, S), 0-255
        region = character_region(x_i, x_j)
        parts["outside"].append(region_mean(change, 1 - region))
        parts["inside"].append(region_mean(change, region))
        parts["region"].append(region.mean(dim=(1, 2, 3)).numpy())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def psnr(mse: float) -> float | None:
    """dB of a mean MSE in 0-255 units; None when the MSE is 0 (identical images)."""
    return 10 * math.log10(255 ** 2 / mse) if mse > 0 else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def bucket_metrics(bucket: tuple[int, int], max_gap: int, per: dict[str, np.ndarray]) -> dict:
    """One gap bucket's figures from its per-pair arrays."""
    model, base = summary(per["model"]), summary(per["video_frames"])
    both = ~np.isnan(per["outside"]) & ~np.isnan(per["inside"])
    inside_mean = float(per["inside"][both].mean()) if both.any() else None
    outside = summary(per["outside"][~np.isnan(per["outside"])])
    inside = summary(per["inside"][~np.isnan(per["inside"])])
    return {
        "gaps": list(bucket), "within_training_gap": bucket[1] <= max_gap, "pairs": len(per["model"]),
        "reconstruction": {
            "model_mse": model, "video_frames_mse": base,
            "model_psnr": psnr(model["mean"]) if model else None,
            "video_frames_psnr": psnr(base["mean"]) if base else None,
            "model_vs_video_frames": ratio(model and model["mean"], base and base["mean"])},
        "background": {
            "outside": outside, "inside": inside,
            "outside_vs_inside": ratio(float(per["outside"][both].mean()), inside_mean)
            if inside_mean is not None and inside_mean >= MIN_CHANGE else None,
            "region_share": float(per["region"].mean()) if len(per["region"]) else None,
            "pairs_with_both_regions": int(both.sum())},
    }


def overlapping(segments: dict[str, list]) -> bool:
    """Whether a val segment shares frames with a train segment (a clip too short to split)."""
    return any(v == w and a < d and c < b for v, a, b in segments["val"] for w, c, d in segments["train"])


def transfer_cases(segments: list[tuple[int, int, int]]) -> list[dict]:
    """(A, B) pairs for transfer.png: A's frame a driven by B's frames from b_start to b_stop."""
    if len(segments) == 1:
        v, start, stop = segments[0]
        return [{"a": v, "a_frame": (start + stop) // 2, "b": v, "b_start": start, "b_stop": stop}]
    n = len(segments)
    return [{"a": segments[k][0], "a_frame": segments[k][1], "b": segments[(k + 1) % n][0],
             "b_start": segments[(k + 1) % n][1], "b_stop": segments[(k + 1) % n][2]}
            for k in range(min(TRANSFER_CASES, n))]


@torch.no_grad()
def transfer_rows(render, data: VideoData, case: dict, device: torch.device) -> list[torch.Tensor]:
    """B's frames (n, 3, S, S), A's first frame (1, 3, S, S) and A driven by B (n, 3, S, S)."""
    k = np.unique(np.round(np.linspace(case["b_start"], case["b_stop"] - 1, TRANSFER_FRAMES)).astype(np.int64))
    b = torch.from_numpy(np.asarray(data.frames[case["b"]][k]).astype(np.float32) / 255)
    a = torch.from_numpy(np.asarray(data.frames[case["a"]][case["a_frame"]:case["a_frame"] + 1])
                         .astype(np.float32) / 255)
    n = len(b)
    a_n, b0 = a.expand(n, -1, -1, -1).to(device), b[:1].expand(n, -1, -1, -1).to(device)
    driven = render(a_n, b0, b.to(device), a_n).float().clamp(0, 1).cpu()  # h(A_0, B_0, B_k, A_0)
    case["b_frames"] = k.tolist()
    return [b, a, driven]


def mosaic(rows: list[torch.Tensor], columns: int, gap: int = 2) -> np.ndarray:
    """Rows of frames (n, 3, S, S) -> one (H, W, 3) image with light-grey gaps and empty cells."""
    s = rows[0].shape[-1] + gap
    image = np.full((len(rows) * s - gap, columns * s - gap, 3), 0.8, np.float32)
    for r, frames in enumerate(rows):
        for c, frame in enumerate(frames):
            image[r * s:r * s + s - gap, c * s:c * s + s - gap] = frame.permute(1, 2, 0).numpy()
    return image


def transfer_png(render, data: VideoData, segments: list, names: list[str], title: str,
                 device: torch.device) -> tuple[bytes, list[dict]]:
    """transfer.png's bytes and its cases (which videos and frames)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = transfer_cases(segments)
    cell = data.frames[0].shape[-1] + 2
    fig, axes = plt.subplots(len(cases), 1, figsize=(1.1 * TRANSFER_FRAMES + 1.6, 3.6 * len(cases)), squeeze=False)
    labels = ["B (driver)", "A", "A driven by B"]
    for ax, case in zip(axes[:, 0], cases):
        rows = transfer_rows(render, data, case, device)
        ax.imshow(mosaic(rows, len(rows[0])), interpolation="nearest")
        ax.set_yticks([(k + 0.5) * cell for k in range(3)], labels, fontsize=8)
        ax.set_xticks([(k + 0.5) * cell for k in range(len(rows[0]))], case["b_frames"], fontsize=7)
        case.update(a_video=names[case["a"]], b_video=names[case["b"]])
        ax.set_title(f"A: {case['a_video']} frame {case['a_frame']}; B: {case['b_video']} frames "
                     f"{case['b_start']}-{case['b_stop'] - 1}\nframe k = h(A, B_first, B_k, A)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue(), cases


def evaluate(render, data: VideoData, max_gap: int, pairs: int, seed: int, device: torch.device,
             title: str = "") -> tuple[dict, bytes]:
    """The metrics of render on data's val split and transfer.png's bytes."""
    segments = data.segments["val"]
    names = [str(c.path.name) for c in data.report.clips]
    rng = np.random.default_rng([seed, 18])
    buckets = {}
    for bucket in gap_buckets(max_gap):
        rows = sample_pairs(segments, bucket, pairs, rng)
        buckets[bucket_name(bucket)] = bucket_metrics(bucket, max_gap, measure(render, data, rows, device))
    picture, cases = transfer_png(render, data, segments, names, title, device)
    head = buckets[bucket_name((1, max_gap))]
    mean = lambda s: s and s["mean"]  # noqa: E731
    metrics = {
        "kind": "footage",
        "ratios": {"reconstruction_vs_video_frames": head["reconstruction"]["model_vs_video_frames"],
                   "background_outside_vs_inside": head["background"]["outside_vs_inside"]},
        "headline": {"gaps": head["gaps"], "pairs": head["pairs"],
                     "model_psnr": head["reconstruction"]["model_psnr"],
                     "video_frames_psnr": head["reconstruction"]["video_frames_psnr"],
                     "background_change_outside": mean(head["background"]["outside"]),
                     "background_change_inside": mean(head["background"]["inside"])},
        "buckets": buckets,
        "max_gap": max_gap, "pairs_per_bucket": pairs, "seed": seed,
        "val_videos": [{"video": names[v], "frames": [start, stop]} for v, start, stop in segments],
        "split_rule": data.report.split_rule, "held_out": not overlapping(data.segments),
        "units": "MSE: mean over pixels and RGB of squared differences of 0-255 values; PSNR: dB of the mean MSE; "
                 "background change: mean absolute difference of 0-255 values",
        "methods": {"model": "h(x_i, x_i, x_j, x_i) vs x_j", "video_frames": "x_i vs x_j (baseline)",
                    "background": "|h(x_i, x_i, x_j, x_i) - h(x_i, x_i, x_i, x_i)| outside and inside R",
                    "region": f"R: max over RGB of |x_i - x_j| after a 3x3 box average > {CHANGE_LEVEL}/255, "
                              "dilated by max(1, S/32) pixels",
                    "transfer": "h(A, B_first, B_k, A)"},
        "transfer": cases,
    }
    return metrics, picture


def markdown(metrics: dict) -> str:
    cell = lambda s, f=".1f": f"{s['mean']:{f}} ± {s['ci95']:{f}}" if s else "–"  # noqa: E731
    num = lambda v, f=".2f": "–" if v is None else format(v, f)  # noqa: E731
    g = metrics["max_gap"]
    videos = ", ".join(f"{v['video']} ({v['frames'][1] - v['frames'][0]} frames)" for v in metrics["val_videos"])
    lines = [f"Held-out videos: {videos}. Up to {metrics['pairs_per_bucket']} pairs (i, j) of one video per gap "
             f"bucket |i - j| (kept frames; the run trained on gaps 1-{g}); mean ± 95% CI.", "",
             *([] if metrics["held_out"] else
               ["**The held-out frames are also training frames** (one clip too short to split): these figures "
                "measure fitting, not generalisation.", ""]),
             "Reconstruction: h(x_i, x_i, x_j, x_i) vs x_j beside *video frames* x_i vs x_j (per-pixel MSE "
             "of 0-255 values; PSNR of the mean MSE).", "",
             "| gaps | pairs | model MSE | video frames MSE | model / video frames | model PSNR | video frames PSNR |",
             "|---|---|---|---|---|---|---|"]
    for name, b in metrics["buckets"].items():
        r = b["reconstruction"]
        label = f"{name} (training)" if b["gaps"] == [1, g] else name
        lines.append(f"| {label} | {b['pairs']} | {cell(r['model_mse'])} | {cell(r['video_frames_mse'])} | "
                     f"{num(r['model_vs_video_frames'], '.3f')} | {num(r['model_psnr'])} dB | "
                     f"{num(r['video_frames_psnr'])} dB |")
    lines += ["", "Background stability: |h(x_i, x_i, x_j, x_i) - h(x_i, x_i, x_i, x_i)| (mean over RGB, 0-255) "
              "outside and inside R, where x_i and x_j differ beyond noise (dilated); outside / inside only where "
              f"the change inside reaches {MIN_CHANGE}.", "",
              "| gaps | outside R | inside R | outside / inside | R's share of the frame |", "|---|---|---|---|---|"]
    for name, b in metrics["buckets"].items():
        s = b["background"]
        lines.append(f"| {name} | {cell(s['outside'], '.2f')} | {cell(s['inside'], '.2f')} | "
                     f"{num(s['outside_vs_inside'], '.3f')} | {num(s['region_share'], '.1%')} |")
    lines += ["", "transfer.png: " + "; ".join(f"{c['a_video']} frame {c['a_frame']} driven by {c['b_video']}"
                                              for c in metrics["transfer"]) + "."]
    c = metrics.get("checkpoint")
    if c:
        lines += ["", f"Checkpoint: {c['path']} ({c['dataset']}, step {c['step']}, {c['samples']} samples, "
                      f"{c['train_minutes']} min)."]
    return "\n".join(lines) + "\n"


def checkpoint_path(run: Path) -> Path:
    """A run folder's last.pt, or the checkpoint file itself."""
    run = Path(run)
    return run / "last.pt" if run.is_dir() else run


def evaluate_run(run_dir: Path | str, out_dir: Path | str | None = None, pairs: int = DEFAULT_PAIRS,
                 seed: int = 0, footage: Path | str | None = None) -> dict:
    """Evaluate a footage run (its folder, or a checkpoint .pt) on its held-out videos, or on every
    video of another folder `footage` (clips the run never saw: other characters, other places);
    write metrics.json, metrics.md and transfer.png into out_dir (default RUN/eval, beside last.pt)
    and return the metrics (what a bundle's manifest records as its evaluation)."""
    t0 = time.time()
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise FootageEvalError(f"pairs: got {pairs!r}, expected a positive number of pairs per gap bucket")
    path = checkpoint_path(Path(run_dir))
    model, ckpt = load_checkpoint(path)
    tcfg = ckpt.get("train_config") or {}
    dataset = str(tcfg.get("dataset", ""))
    if not dataset.startswith(VIDEOS):
        raise FootageEvalError(f"{path}: trained on {dataset or 'an unknown dataset'!r}; expected a run of "
                               f"`eqsdk train FOLDER` (train_config.dataset = '{VIDEOS}FOLDER')")
    crop = tcfg.get("video_crop")
    crop = None if crop is None else tuple(crop)
    if footage is None:
        data = load_videos(dataset[len(VIDEOS):], model.cfg.image_size, crop)
    else:  # all of it held out
        data = VideoData.build(footage, model.cfg.image_size, crop)
        data.segments = {"val": [(k, 0, len(f)) for k, f in enumerate(data.frames)], "train": []}
    max_gap = int(tcfg.get("max_gap") or DEFAULT_MAX_GAP)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    out = Path(out_dir) if out_dir is not None else path.parent / "eval"
    title = (f"{Path(dataset[len(VIDEOS):]).name}: step {ckpt['step']}, "
             + ("held-out videos" if footage is None else f"the videos of {Path(footage).name}"))
    metrics, picture = evaluate(model, data, max_gap, pairs, seed, device, title)
    if footage is not None:
        metrics["split_rule"] = "every video of the folder, none seen in training"
    metrics["footage"] = str(Path(footage).resolve()) if footage is not None else dataset[len(VIDEOS):]
    metrics["checkpoint"] = {"path": str(path), "dataset": dataset, "step": ckpt["step"], "samples": ckpt["samples"],
                             "train_minutes": round(ckpt["elapsed"] / 60, 1), "command": ckpt.get("command")}
    metrics["seconds"] = round(time.time() - t0, 1)
    write(out, metrics, picture)
    return metrics


def write(out: Path, metrics: dict, picture: bytes) -> None:
    """The three files, each written whole (a temporary file renamed)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in (("transfer.png", picture), ("metrics.md", markdown(metrics).encode()),
                              ("metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())):
            with replacing(out / name) as tmp:
                tmp.write_bytes(content)
    except OSError as e:
        raise FootageEvalError(f"output folder {str(out)!r}: cannot write ({e.strerror or e}); "
                               "expected a writable folder") from None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m train.evaluate_footage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="the run folder of eqsdk train (or its last.pt)")
    p.add_argument("--out", type=Path, help="folder for the results [default: RUN/eval]")
    p.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="pairs per gap bucket [default: %(default)s]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--footage", type=Path,
                   help="evaluate on every video of this folder instead of the run's held-out ones")
    args = p.parse_args(argv)
    try:
        metrics = evaluate_run(args.run, args.out, args.pairs, args.seed, args.footage)
    except EqsdkError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"ratios": metrics["ratios"], "headline": metrics["headline"]}, indent=2))


if __name__ == "__main__":
    main()
