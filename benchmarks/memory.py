"""Peak memory (resident set size) of animate and compose against the clip's length or the
number of characters.

    python benchmarks/memory.py --out benchmarks/results/memory.md

Each case runs in a fresh process with the bundled model on the CPU; its peak RSS is the
kernel's (wait4's ru_maxrss). Cases:
  cli      `eqsdk animate --char CHAR --drive FOLDER -o out.gif`, FOLDER holding N frames
  api      r.animate_iter(CHAR, BG, frames) into eqsdk.save_clip(..., "out.mp4"), the frames
           made by a generator (no file)
  compose  r.encode_character([CHAR] * N), then r.compose with one motion and one background;
           the peak of the compose call alone is measured too (Linux: /proc/self/clear_refs)
Memory that stays flat as N grows is the streaming at work; what grows is what the caller
holds: compose's output (N, 64, 64, 3) uint8 (12 KB a character) and the characters'
features (N, 64, 16, 16) float32 (64 KB a character).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAR, BG = ROOT / "examples" / "case1" / "char.png", ROOT / "examples" / "case1" / "bg.png"
MB = 1024 * 1024


def peak_of(cmd: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MiB, seconds, stdout) of a command run in a fresh process: wait4 gives the
    rusage of exactly that child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.decode()}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, out.decode()


def drive_folder(directory: Path, n: int) -> Path:
    """N driving frames: the character turned by a different angle in each (PNG, fast to write)."""
    from PIL import Image

    folder = directory / f"drive-{n}"
    folder.mkdir()
    base = Image.open(CHAR).convert("RGB")
    turns = [base.rotate(a) for a in range(-20, 21, 2)]
    for k in range(n):
        turns[k % len(turns)].save(folder / f"frame_{k:05d}.png", compress_level=1)
    return folder


# Child processes.
def child_api(n: int, out: Path) -> dict:
    import numpy as np
    from PIL import Image

    import eqsdk

    base = Image.open(CHAR).convert("RGB")
    frames = (np.asarray(base.rotate(k % 41 - 20)) for k in range(n))
    r = eqsdk.load()
    eqsdk.save_clip(r.animate_iter(CHAR, BG, frames), out, fps=25)
    return {}


def rss_now() -> tuple[float, float]:
    """(current, peak since the last reset) RSS in MiB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def child_compose(n: int) -> dict:
    import numpy as np

    import eqsdk
    from eqsdk.renderer import Encoding

    r = eqsdk.load()
    r.warmup()
    loaded, _ = rss_now()
    characters = r.encode_character([str(CHAR)] * n)
    background = r.encode_background(str(BG))
    motion = Encoding("motion", (np.array([[[0.9, -0.3, 0.1], [0.3, 0.9, 0.0]]], np.float32),
                                 np.zeros((1, 2), np.float32)), 1, True)
    before, _ = rss_now()
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    images = r.compose(characters, motion, background)
    _, peak = rss_now()
    return {"loaded_mb": loaded, "encoded_mb": before, "compose_peak_mb": peak,
            "compose_extra_mb": peak - before, "output_mb": images.nbytes / MB,
            "features_mb": characters.data.nbytes / MB}


# The report.
def markdown(rows: list[tuple], frames: str, characters: str) -> str:
    """rows: (case, N, peak RSS MiB, seconds, note)."""
    lines = ["# Peak memory against clip length and character count", "",
             f"`python benchmarks/memory.py --frames {frames} --characters {characters}"
             " --out benchmarks/results/memory.md`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
             "bundled mnist model, CPU backend. Peak RSS of a fresh process (wait4's ru_maxrss); "
             "seconds are wall time including start-up.", "",
             "| case | N | peak RSS (MiB) | seconds | notes |", "|---|---:|---:|---:|---|"]
    lines += [f"| {case} | {n:,} | {peak:.0f} | {secs:.1f} | {note} |" for case, n, peak, secs, note in rows]
    lines.append("")
    for case in dict.fromkeys(r[0] for r in rows):
        peaks = [(n, peak) for c, n, peak, _, _ in rows if c == case]
        (n0, p0), (n1, p1) = peaks[0], peaks[-1]
        if n1 == n0:
            continue
        lines.append(f"- {case}: {p1 - p0:+.0f} MiB from N = {n0:,} to {n1:,} "
                     f"({(p1 - p0) * 1024 / (n1 - n0):.1f} KiB per item)")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", default="100,1000,10000", help="clip lengths for cli and api")
    p.add_argument("--characters", default="1000,10000", help="character counts for compose")
    p.add_argument("--out", type=Path, help="write the Markdown report here")
    p.add_argument("--child", choices=["api", "compose"], help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = child_api(args.n, args.output) if args.child == "api" else child_compose(args.n)
        print(json.dumps(result))
        return

    frames = [int(n) for n in args.frames.split(",")]
    characters = [int(n) for n in args.characters.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in frames:
            folder = drive_folder(tmp, n)
            peak, secs, _ = peak_of([sys.executable, "-m", "eqsdk", "animate", "--char", str(CHAR),
                                     "--drive", str(folder), "-o", str(tmp / f"cli-{n}.gif")])
            rows.append(("cli: eqsdk animate -> GIF", n, peak, secs, ""))
            print(rows[-1], flush=True)
        for n in frames:
            peak, secs, _ = peak_of([sys.executable, __file__, "--child", "api", "--n", str(n),
                                     "--output", str(tmp / f"api-{n}.mp4")])
            rows.append(("api: animate_iter -> save_clip MP4", n, peak, secs, ""))
            print(rows[-1], flush=True)
        for n in characters:
            peak, secs, out = peak_of([sys.executable, __file__, "--child", "compose", "--n", str(n)])
            c = json.loads(out)
            note = (f"compose call alone: +{c['compose_extra_mb']:.0f} MiB over the "
                    f"{c['encoded_mb']:.0f} MiB before it (its output {c['output_mb']:.0f} MiB); "
                    f"features {c['features_mb']:.0f} MiB")
            rows.append(("compose: encode_character + compose", n, peak, secs, note))
            print(rows[-1], flush=True)

    report = markdown(rows, args.frames, args.characters)
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
