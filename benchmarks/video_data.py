"""Samples/s of training pairs read from cached footage (train/videos.py) against the in-memory
generators (train.datasets.pair_source "sprites" and "lpc-open").

    python -m benchmarks.video_data [--clips 8] [--frames 300] [--characters 64] [--out FILE.md]

Writes `clips` H.264 MP4 files of `frames` 320x240 frames (a textured still background, a square
walking across it) to a temporary folder, builds the dataset twice (decoding into an empty cache,
then from the cache) and times sample_pairs(64, rng) of each source: `calls` timed calls after 3
warm-up calls, their median (the cache's pages are then in the page cache, as in training). The
sprites source is the first `characters` characters of the split (a quick cache build; a batch
indexes one array whatever the split's size); lpc-open renders its characters per batch. Needs
the lpc data set (train/data_dir.py).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from train.datasets import pair_source
from train.videos import VideoData

BATCH = 64


def write_clips(folder: Path, clips: int, frames: int, width: int = 320, height: int = 240) -> None:
    import av

    rng = np.random.default_rng(0)
    for c in range(clips):
        small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        bg = np.asarray(Image.fromarray(small).resize((width + 16, height + 16), Image.BICUBIC))[:height, :width]
        with av.open(str(folder / f"clip{c}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=25, options={"crf": "18", "preset": "veryfast"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for k in range(frames):
                f = bg.copy()
                x = 40 + (3 * k) % (width - 120)
                f[100:160, x:x + 40] = (255, 255, 255)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            container.mux(stream.encode())


def samples_per_s(source, calls: int, **kwargs) -> float:
    """BATCH / the median seconds of one sample_pairs call."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        source.sample_pairs(BATCH, rng, **kwargs)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        source.sample_pairs(BATCH, rng, **kwargs)
        times.append(time.perf_counter() - t0)
    return BATCH / float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.video_data", description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--characters", type=int, default=64)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--note", default="", help="a line on the machine's load, printed with it")
    parser.add_argument("--out", type=Path, help="also write the report to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = ["# Training pairs from cached footage against the in-memory generators", "",
             f"`python -m benchmarks.video_data --clips {args.clips} --frames {args.frames} "
             f"--characters {args.characters} --calls {args.calls}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
             f"torch {torch.__version__}, 1 torch thread. {args.note}".rstrip(), "",
             f"Footage: {args.clips} H.264 MP4 clips of {args.frames} frames at 320x240. "
             f"Rate: sample_pairs({BATCH}, rng), median of {args.calls} calls after 3 warm-up calls.", ""]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips, cache = Path(tmp) / "clips", Path(tmp) / "cache"
        clips.mkdir()
        write_clips(clips, args.clips, args.frames)
        for size in (64, 128):
            t0 = time.perf_counter()
            VideoData.build(clips, size, cache_dir=cache)
            t_decode = time.perf_counter() - t0
            t0 = time.perf_counter()
            data = VideoData.build(clips, size, cache_dir=cache)
            t_cached = time.perf_counter() - t0
            assert all(c.cached for c in data.report.clips)
            pairs = data.pairs("train")
            rows.append((f"videos, {size}x{size}", samples_per_s(pairs, args.calls),
                         f"build: {t_decode:.1f} s decoding {args.clips * args.frames} frames, "
                         f"{t_cached:.2f} s from the cache"))
            rows.append((f"videos, {size}x{size}, augment=True", samples_per_s(pairs, args.calls, augment=True),
                         "as train.train calls it (mirrors half the pairs)"))
    for name in ("sprites", "lpc-open"):
        source = pair_source(name, "train", 0, characters=args.characters)
        rows.append((f"{name} (in memory), 64x64", samples_per_s(source, args.calls), ""))
    lines += ["| source | samples/s | notes |", "|---|---:|---|"]
    lines += [f"| {name} | {rate:,.0f} | {note} |" for name, rate, note in rows]
    video64 = rows[0][1]
    lines += ["", "Videos at 64x64 against each generator: "
              + ", ".join(f"{video64 / rate:.1f}x {name.split(' ')[0]}" for name, rate, _ in rows[4:])]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
