"""Train a model on the user's own footage: what `eqsdk train FOLDER --out RUN` runs.

FOLDER is read by train/videos.py (videos and folders of frames, one video each; validated,
split by video, cached). The model and its schedules are those the shipped models were trained
with, from a random start:

- the model: ModelConfig's defaults at the chosen frame size (features at a quarter of it), with
  two extra decoder layers at each upsampled resolution (sharper edges; the sprites recipes);
- the schedules: TrainConfig's defaults, the first stage of the mnist and sprites recipes. Half
  the renders are made from f_b alone at first (background dropout: the still background must
  settle in f_b), falling to none at 300k samples; pairs of adjacent frames only for the first
  100k samples; L_equiv from 150k samples, ramped in over 110k (T^Z only moves once g renders).
  So a run should see about 400k samples (6,000 steps of 64 pairs) to go through them all.

Every --sample-every seconds the run writes samples.png (rows: x1, x2, render, background part
alone, character part alone) and preview.gif: the first frame of a held-out video driven by
another held-out video (or by itself when there is one), beside that driving clip. Under torchrun
the same command trains data-parallel (train/distributed.py).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from train import distributed
from train.datasets import VIDEOS
from train.model import ModelConfig, SceneModel
from train.train import Budget, TrainConfig, train
from train.videos import DEFAULT_MAX_GAP, VideoData, VideoDataError, load_videos

SIZES = (32, 64, 128, 256)  # square frames; a multiple of 4 (the features are a quarter of it)
PREVIEW_FRAMES = 24


@dataclass(frozen=True)
class FootageRun:
    """What `eqsdk train` was asked for."""
    folder: Path
    out: Path
    size: int = 64
    steps: int | None = None
    minutes: float | None = None
    batch: int = 64
    max_gap: int = DEFAULT_MAX_GAP
    crop: tuple[int, int, int, int] | None = None
    seed: int = 0
    sample_every: float = 300.0

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        return (ModelConfig(image_size=self.size, decoder_extra=2),
                TrainConfig(dataset=VIDEOS + str(self.folder.resolve()), seed=self.seed, batch=self.batch,
                            video_crop=self.crop, max_gap=self.max_gap))


def check(run: FootageRun) -> VideoData:
    """The footage, read and cached before any training (its report names what was rejected)."""
    if run.size not in SIZES:
        raise VideoDataError(f"--size {run.size}: expected one of {', '.join(map(str, SIZES))}")
    if run.steps is None and run.minutes is None:
        raise VideoDataError("no budget: expected --steps N and/or --minutes M")
    return load_videos(str(run.folder.resolve()), run.size, run.crop)


@torch.no_grad()
def write_preview(model: SceneModel, data: VideoData, path: Path, max_gap: int = DEFAULT_MAX_GAP) -> None:
    """preview.gif: the first frame of a held-out video (its character and background) driven by
    another held-out video's frames, h(x_c, x_t1 = D_0, x_t2 = D_k, x_b = x_c), beside the driver."""
    segments = data.segments["val"]
    (char_video, char_start, _), (drive_video, start, stop) = segments[0], segments[-1]
    x_c = torch.from_numpy(np.asarray(data.frames[char_video][char_start:char_start + 1], np.float32) / 255)
    step = max(1, (stop - start) // PREVIEW_FRAMES)
    drive = torch.from_numpy(np.asarray(data.frames[drive_video][start:stop:step][:PREVIEW_FRAMES], np.float32) / 255)
    device = next(model.parameters()).device
    x_c, drive = x_c.to(device), drive.to(device)
    n = len(drive)
    rendered = model(x_c.expand(n, -1, -1, -1), drive[:1].expand(n, -1, -1, -1), drive,
                     x_c.expand(n, -1, -1, -1)).float().clamp(0, 1)
    frames = torch.cat([drive, rendered], dim=3).permute(0, 2, 3, 1).mul(255).round().byte().cpu().numpy()
    scale = max(1, 128 // frames.shape[1])
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    tmp = path.with_name(path.name + ".tmp")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    tmp.replace(path)


def train_on_footage(run: FootageRun, command: str | None = None) -> dict:
    """Read and check the footage, then train (or resume) into run.out; the last checkpoint.
    command: how the run was started, recorded in the checkpoint and the bundle."""
    data = check(run)
    if distributed.is_main_process():
        print(data.report.format(), file=sys.stderr)
    cfg, tcfg = run.configs()
    return train(run.out, cfg, tcfg, Budget(run.steps, run.minutes), record={"command": command},
                 sample_every=run.sample_every,
                 preview=lambda model: write_preview(model, data, run.out / "preview.gif", run.max_gap))
