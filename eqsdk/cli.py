"""The eqsdk command line. Exit codes: 0 ok, 2 bad input, 1 internal error."""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path

import click

from eqsdk import __version__
from eqsdk.bundle import DEFAULT_MODEL, MODELS
from eqsdk.errors import BackendError, EqsdkError, InputError
from eqsdk.images import ResizeWarning, check_output, check_scale
from eqsdk.renderer import BATCH

MODEL_HELP = f"bundled model ({', '.join(MODELS)}) or a bundle directory [default: {DEFAULT_MODEL}]"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="eqsdk")
def cli() -> None:
    """Render scenes: a character on a background, moved by an animation.

    \b
    Example:
      eqsdk render --char examples/case1/char.png --bg examples/case1/bg.png \\
          --anim examples/case1/anim_start.png examples/case1/anim_end.png -o out.png
    """


BACKEND_HELP = "auto, cpu, cuda, tensorrt or openvino [default: cpu]"
precision_option = click.option(
    "--precision", default="auto", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    help="auto: bf16 on openvino where the CPU has it, fp32 elsewhere; fp32: exact on every "
         "backend; bf16 (openvino), fp16 (tensorrt) [default: auto]")
check_motion_option = click.option(
    "--check-motion/--no-check-motion", default=False,
    help="check T^Z's reading of the motion by rendering turns of it: truer far turns, about 5x "
         "the time [default: off]")


@cli.command()
@click.option("--char", metavar="IMAGE", help="image whose character is rendered")
@click.option("--bg", metavar="IMAGE", help="image whose background is used")
@click.option("--anim", nargs=2, metavar="START END",
              help="two frames of a video: the character moves as it moved from START to END")
@click.option("-o", "--output", metavar="FILE", help="image to write (.png, .jpg, ...)")
@click.option("--batch", "jobs", metavar="JOBS", type=click.Path(dir_okay=False),
              help="CSV or JSON list of jobs (char, bg, anim_start, anim_end, output) instead")
@click.option("--model", default=DEFAULT_MODEL, show_default=False, metavar="NAME|PATH", help=MODEL_HELP)
@click.option("--backend", default="cpu", metavar="NAME", help=BACKEND_HELP)
@precision_option
@click.option("--scale", default=1, type=click.IntRange(1, 32), help="upscale the output N times for viewing")
@check_motion_option
@click.option("--force", is_flag=True, help="overwrite output files that exist")
def render(char, bg, anim, output, jobs, model, backend, precision, scale, check_motion, force) -> None:
    """Render the character of CHAR on the background of BG, moved as in ANIM.

    \b
    Examples:
      eqsdk render --char a.png --bg b.png --anim p.png q.png -o out.png
      eqsdk render --batch jobs.csv        # header: char,bg,anim_start,anim_end,output
    """
    import eqsdk

    single = {"--char": char, "--bg": bg, "--anim": anim, "-o": output}
    if jobs:
        given = [k for k, v in single.items() if v]
        if given:
            raise click.UsageError(f"--batch takes its images from the jobs file; drop {', '.join(given)}")
        return render_jobs(jobs, model, backend, scale, force, check_motion, precision=precision)
    missing = [k for k, v in single.items() if not v]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or give --batch JOBS)")
    check_output(Path(output), overwrite=force)  # before any work: nothing is touched on error
    renderer = eqsdk.load(model, backend=backend, precision=precision, check_motion=check_motion)
    check_scale(scale, (renderer.image_size, renderer.image_size))
    image = renderer.render(char=char, bg=bg, anim=anim)
    eqsdk.save_image(image, output, overwrite=force, scale=scale)
    click.echo(f"wrote {output} ({image.shape[1] * scale}x{image.shape[0] * scale}, "
               f"model {renderer.name}, backend {renderer.backend.name} {renderer.backend.precision})", err=True)


def render_jobs(path: str, model: str, backend: str, scale: int, force: bool, check_motion: bool,
                batch: int = 32, precision: str = "auto") -> None:
    """All jobs of a file, checked first, then rendered in batches by one loaded model; the
    outputs appear together at the end, or none of them on any failure (eqsdk.jobs.staged)."""
    import numpy as np

    import eqsdk
    from eqsdk.images import to_array, to_uint8
    from eqsdk.jobs import read_jobs, staged, within

    jobs = read_jobs(path, overwrite=force)
    renderer = eqsdk.load(model, backend=backend, precision=precision, check_motion=check_motion)
    size, resized = renderer.image_size, []
    with staged([j.output for j in jobs]) as temps, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResizeWarning)  # counted, then one note
        for k in range(0, len(jobs), batch):
            part = jobs[k:k + batch]
            x = []
            for f in ("char", "anim_start", "anim_end", "bg"):
                arrays = []
                for j in part:
                    with within(j):
                        arrays.append(to_array(getattr(j, f), size, f))
                x.append(np.stack(arrays))
            for job, image in zip(part, to_uint8(renderer.render_arrays(*x))):
                with within(job):
                    eqsdk.save_image(image, temps[job.output], overwrite=True, scale=scale)
        resized = [w for w in caught if issubclass(w.category, ResizeWarning)]
        for w in caught:
            if not issubclass(w.category, ResizeWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if resized:
        click.echo(f"eqsdk: note: {len(resized)} input images resized to {size}x{size}, the "
                   "model's size", err=True)
    click.echo(f"wrote {len(jobs)} images from {path} (model {renderer.name}, "
               f"backend {renderer.backend.name} {renderer.backend.precision})", err=True)


@cli.command()
@click.option("--model", default=DEFAULT_MODEL, metavar="NAME|PATH", help=MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the manifest, checks and backends as JSON")
def info(model, as_json) -> None:
    """Show a model bundle (config, graphs, evaluation, provenance), what was checked of it,
    and the backends here."""
    import json

    import eqsdk
    from eqsdk.backends import available
    from eqsdk.verify import check_golden, describe_checks

    renderer = eqsdk.load(model, backend="cpu")  # sha256 of every file, each graph's interface
    golden = check_golden(renderer)
    checked = describe_checks(renderer, golden)
    backends = available()
    if as_json:
        click.echo(json.dumps({"path": str(renderer.backend.directory),
                               "manifest": renderer.manifest.to_json(), "checked": checked,
                               "golden_max_abs_diff": golden, "backends": backends}, indent=2))
        return
    click.echo(bundle_summary(renderer.backend.directory, renderer.manifest))
    click.echo("checked:")
    for line in checked:
        click.echo(f"  {line}")
    click.echo("backends on this machine:")
    for name, reason in backends.items():
        click.echo(f"  {name:9} {'available' if reason is None else 'not available: ' + reason}")


def bundle_summary(directory: Path, m) -> str:
    """The manifest (eqsdk.manifest.Manifest) in a few lines."""
    lines = [f"model     {m.name}  ({directory})",
             "config    " + ", ".join(f"{k}={v}" for k, v in m.config.items()),
             f"graphs    opset {m.opset}"]
    for name, g in m.graphs.items():
        ins = ", ".join(f"{k}{list(v)}" for k, v in g.inputs.items())
        outs = ", ".join(f"{k}{list(v)}" for k, v in g.outputs.items())
        lines.append(f"  {name:6} {ins} -> {outs}  [{g.sha256[:12]}]")
    if m.training is not None:
        if m.training.recipe:
            lines.append(f"recipe    {m.training.recipe}")
        for k, stage in enumerate(m.training.stages()):
            lines.append(f"{'training' if k == 0 else '':9} {'' if k == 0 else 'from '}"
                         f"{stage.minutes:g} min, {stage.samples:,} samples: {stage.command or '?'}")
    lines += [f"eval      {line}" for line in evaluation_lines(m.evaluation)]
    if m.parity:
        lines.append("parity    ONNX Runtime vs PyTorch max abs diff: "
                     + ", ".join(f"{k} {v:.1e}" for k, v in m.parity.items()))
    return "\n".join(lines)


def evaluation_lines(ev) -> list[str]:
    """The headline figures of train.evaluate (Moving MNIST: ratios) or train.evaluate_sprites
    (targets per animation; per split when it evaluated several); numbers only, whatever else the
    record holds."""
    splits = ev.get("splits")
    if hasattr(splits, "items"):
        return [f"{name}: {line}" for name, split in splits.items() if hasattr(split, "get")
                for line in evaluation_lines(split)] + reader_lines(ev)
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    lines = [f"{key} = {value:.3f}" for key, value in (ev.get("ratios") or {}).items() if number(value)]
    for key, t in ({} if "ratios" in ev else ev.get("targets") or {}).items():
        if not hasattr(t, "get"):
            continue
        per = t.get("per_animation") or {}
        if per:
            lines.append(f"{key}: " + ", ".join(f"{a} {v.get('ratio'):.3f}" for a, v in per.items()
                                                if hasattr(v, "get") and number(v.get("ratio")))
                         + f" (bar {t.get('bar')})")
        elif number(t.get("ratio")):
            lines.append(f"{key} = {t['ratio']:.3f} (bar {t.get('bar')})")
    checked = ev.get("with_motion_check") or {}
    if hasattr(checked, "get") and hasattr(checked.get("ratios"), "items"):
        lines.append("with --check-motion: " + ", ".join(
            f"{k} = {v:.3f}" for k, v in checked["ratios"].items() if number(v)))
    return lines + reader_lines(ev)


def reader_lines(ev) -> list[str]:
    """The motion reader's figures (export.add_reader's record), numbers only."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    record = ev.get("reader")
    reader = record.get("evaluation") if hasattr(record, "get") else None
    if not hasattr(reader, "get"):
        return []
    figures = [f"{k} = {v.get('reader'):.3f}" for k, v in (reader.get("ratios") or {}).items()
               if hasattr(v, "get") and number(v.get("reader"))]
    recon = reader.get("reconstruction") or {}
    if hasattr(recon, "get") and number(recon.get("reader")) and number(recon.get("t_z")) and recon["t_z"]:
        figures.append(f"reconstruction MSE {recon['reader'] / recon['t_z'] - 1:+.0%} over T^Z's")
    return ["with --reader: " + ", ".join(figures)] if figures else []


@cli.command()
@click.option("--model", default=DEFAULT_MODEL, metavar="NAME|PATH", help=MODEL_HELP)
def verify(model) -> None:
    """Check a bundle end to end on the CPU (sha256 of every graph, interfaces, the golden render
    recorded at export), then run every other backend available here on the same random inputs:
    the max abs difference per graph against ONNX Runtime CPU (fp32 <= 1e-4, fp16 <= 1e-2,
    bf16 <= 0.2)."""
    import eqsdk
    from eqsdk.backends import PRECISIONS, available
    from eqsdk.verify import TOLERANCE, check_golden, compare, describe_checks

    reference = eqsdk.load(model, backend="cpu")
    golden = check_golden(reference)  # a BundleError (exit 2) when the graphs are not the model's
    click.echo(f"{reference.name}: ok; reference {reference.backend.describe()}")
    for line in describe_checks(reference, golden):
        click.echo(f"  checked {line}")
    runs = [(n, p) for n, reason in available().items() if reason is None and n != "cpu"
            for p in PRECISIONS[n]]
    if not runs:
        click.echo("no other backend is available here; nothing to compare (see eqsdk info)")
    failed = []
    for name, precision in runs:
        try:
            candidate = eqsdk.load(model, backend=name, precision=precision)
        except eqsdk.BackendError as e:
            if precision == "fp32":
                raise
            click.echo(f"{name:9} {precision}  not run: {e}")  # e.g. bf16 on a CPU without it
            continue
        diffs = compare(reference.backend, candidate.backend, reference.manifest.config)
        ok = max(diffs.values()) <= TOLERANCE[precision]
        failed += [] if ok else [f"{name} {precision}"]
        click.echo(f"{name:9} {precision}  " + "  ".join(f"{g} {d:.1e}" for g, d in diffs.items())
                   + f"  {'ok' if ok else 'FAILED'} (tolerance {TOLERANCE[precision]:g})")
    if failed:
        raise click.ClickException(f"outside tolerance: {', '.join(failed)}")


@cli.command()
@click.option("--char", required=True, metavar="IMAGE", help="image whose character is animated")
@click.option("--bg", metavar="IMAGE", help="image whose background is used [default: CHAR's own]")
@click.option("--drive", metavar="CLIP",
              help="driving clip: GIF, animated PNG/WebP, folder of frames, or video (.mp4, ...)")
@click.option("--motion", metavar="FILE",
              help="a saved motion (.eqm, from eqsdk encode-motion) instead of --drive: only the "
                   "warp and g run")
@click.option("-o", "--output", metavar="OUT",
              help="clip to write: .gif, .mp4 (.mov, .mkv, .avi) or a folder of PNG frames "
                   "[default: CHAR-DRIVE.gif in the current directory]")
@click.option("--fps", type=float,
              help="output frame rate, 0.1 to 100 for GIF, to 240 for video "
                   "[default: the driving clip's, else 10]")
@click.option("--side-by-side", is_flag=True, help="put each driving frame left of its output frame")
@click.option("--model", default=DEFAULT_MODEL, show_default=False, metavar="NAME|PATH", help=MODEL_HELP)
@click.option("--backend", default="cpu", metavar="NAME", help=BACKEND_HELP)
@precision_option
@click.option("--scale", default=1, type=click.IntRange(1, 32), help="upscale the output N times for viewing")
@check_motion_option
@click.option("--reader", is_flag=True,
              help="read each driving frame's motion with the model's motion reader instead of f_c "
                   "and T^Z: faster, at the quality cost its model card states")
@click.option("--force", is_flag=True, help="overwrite the output if it exists")
def animate(char, bg, drive, motion, output, fps, side_by_side, model, backend, precision, scale,
            check_motion, reader, force) -> None:
    """Animate the character of CHAR on the background of BG (or its own): frame k moves it as
    the driving character moved from the clip's first frame to frame k.

    \b
    Examples:
      eqsdk animate --char examples/case1/char.png --bg examples/case1/bg.png \\
          --drive examples/drive/drive.gif -o out.gif --side-by-side --scale 4
      eqsdk animate --model sprites --char examples/sprites/knight.png \\
          --drive examples/sprites/walk_sequence.gif
      eqsdk animate --char examples/case1/char.png --motion walk.eqm -o out.gif

    Video files (.mp4, ...) need: pip install 'eqsdk[video]'
    """
    import itertools

    import eqsdk
    from eqsdk import video

    if (drive is None) == (motion is None):
        raise click.UsageError("expected --drive CLIP or --motion FILE (one of them)")
    if motion and side_by_side:
        raise click.UsageError("--side-by-side shows the driving frames, which a --motion file does "
                               "not hold; expected --drive CLIP for it")
    if motion and check_motion:
        raise click.UsageError("--check-motion checks motions as the clip is read: give it to "
                               "encode-motion; a --motion file is replayed as saved")
    if motion and reader:
        raise click.UsageError("--reader reads motions as the clip is read; a --motion file is "
                               "replayed as saved: expected --drive CLIP for it")
    if check_motion and reader:
        raise click.UsageError("--check-motion checks T^Z's motion, which --reader replaces; "
                               "expected one of them")
    bg = bg or char
    output = output or f"{Path(char).stem}-{Path(drive or motion).stem}.gif"
    kind = video.check_clip_output(Path(output), overwrite=force)  # before any work
    if fps is not None:
        fps = video.check_fps(fps, kind)
    if drive:
        clip, clip_fps = video.read_clip(drive)  # checked now, decoded frame by frame later
    else:
        clip = motion = eqsdk.load_motion(motion)  # checked now; len(): its frames
        clip_fps = motion.fps
    renderer = eqsdk.load(model, backend=backend, precision=precision, check_motion=check_motion,
                          reader=reader)
    size = renderer.image_size
    w, h = (2 * size if side_by_side else size), size
    check_scale(scale, (w, h))
    if fps is None:
        fps = clip_fps or video.DEFAULT_FPS
        low, high = video.FPS_RANGE[kind]
        if not low <= fps <= high:
            click.echo(f"eqsdk: note: the driving clip's {fps:g} fps is outside {low:g}..{high:g} "
                       f"for a {kind} output; writing {min(max(fps, low), high):g} fps", err=True)
            fps = min(max(fps, low), high)
    frames = clip if motion else model_sized(clip, size)
    if side_by_side:  # the driving frames twice: tee keeps at most a batch of them
        frames, shown = itertools.tee(frames)
    # A bar only where someone watches and waits: logs and tests get the summary alone.
    show = sys.stderr.isatty() and len(clip) > 16
    with (click.progressbar(length=len(clip), label="animating", file=sys.stderr)
          if show else contextlib.nullcontext()) as bar:
        out = renderer.animate_iter(char, bg, frames,
                                    progress=(lambda done, _: bar.update(done - bar.pos)) if show else None)
        if side_by_side:
            out = video.side_by_side(shown, out)
        video.save_clip(out, output, fps=fps, overwrite=force, scale=scale)  # frame by frame
    click.echo(f"wrote {output} ({len(clip)} frames, {w * scale}x{h * scale}, {fps:g} fps, "
               f"model {renderer.name}, backend {renderer.backend.name} {renderer.backend.precision})", err=True)


def model_sized(clip, size: int):
    """A clip's frames at the model's size, with one note (not one per frame) when resized."""
    if clip.size == (size, size):
        return clip
    click.echo(f"eqsdk: note: drive: resized {len(clip)} frames from {clip.size[0]}x{clip.size[1]} "
               f"to {size}x{size}, the model's size", err=True)
    from eqsdk import video

    return video.resize_frames(clip, size)


@cli.command("encode-motion")
@click.argument("clip")
@click.option("-o", "--output", metavar="FILE",
              help="motion file to write (.eqm) [default: CLIP's name.eqm in the current directory]")
@click.option("--model", default=DEFAULT_MODEL, show_default=False, metavar="NAME|PATH", help=MODEL_HELP)
@click.option("--backend", default="cpu", metavar="NAME", help=BACKEND_HELP)
@check_motion_option
@click.option("--force", is_flag=True, help="overwrite the output if it exists")
def encode_motion(clip, output, model, backend, check_motion, force) -> None:
    """Save the motions of the driving clip CLIP (frame k: T^Z's theta from its first frame to
    frame k) with the model's identity, for `eqsdk animate --motion` without the clip.

    \b
    Example:
      eqsdk encode-motion examples/drive/drive.gif -o walk.eqm
      eqsdk animate --char examples/case1/char.png --motion walk.eqm -o out.gif
    """
    import eqsdk
    from eqsdk import motion_file, video

    output = output or f"{Path(clip).stem}{motion_file.EXTENSION}"
    motion_file.check_motion_output(output, overwrite=force)  # before any work
    frames, fps = video.read_clip(clip)
    if len(frames) > motion_file.MAX_FRAMES:
        raise eqsdk.InputError(f"drive {clip!r}: {len(frames):,} frames; expected at most "
                               f"{motion_file.MAX_FRAMES:,} for a motion file")
    renderer = eqsdk.load(model, backend=backend, check_motion=check_motion)
    motion = renderer.encode_motion_clip(model_sized(frames, renderer.image_size), fps=fps)
    eqsdk.save_motion(motion, output, overwrite=force)
    click.echo(f"wrote {output} ({len(motion)} frames, model {renderer.name}, backend "
               f"{renderer.backend.name})", err=True)


@contextlib.contextmanager
def training_code():
    """Around an import of the training and export code, which needs the `train` extra (torch)."""
    try:
        yield
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in ("train", "export"):  # an editable install run outside its checkout
            raise BackendError("the training code of an editable install is importable from its checkout's "
                               "root only: run 'python -m eqsdk ...' there, or install the package: "
                               "pip install '.[train]'") from None
        if top in ("torch", "onnx", "onnxscript", "av", "tqdm", "matplotlib"):
            raise BackendError(f"eqsdk train and eqsdk export need PyTorch and the training packages "
                               f"({e.name} is missing): pip install 'eqsdk[train]'") from None
        raise


def parse_crop(ctx, param, value):
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise click.BadParameter(f"got {value!r}, expected x,y,w,h: four whole numbers of source pixels")
    return tuple(int(p) for p in parts)


@cli.command("train")
@click.argument("footage", metavar="FOLDER")
@click.option("--out", required=True, metavar="RUN", help="run folder: checkpoints, logs, previews (resumed if it holds one)")
@click.option("--size", default=64, show_default=True, type=click.Choice(["32", "64", "128", "256"]),
              help="square frame size the model works at")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), help="train this long (in all, across resumes)")
@click.option("--steps", type=click.IntRange(1), help="train this many steps of --batch pairs (in all)")
@click.option("--batch", default=64, show_default=True, type=click.IntRange(1), help="pairs per step (all processes together)")
@click.option("--max-gap", default=8, show_default=True, type=click.IntRange(1),
              help="a pair's two frames are at most this many kept frames apart")
@click.option("--crop", callback=parse_crop, metavar="X,Y,W,H", help="region of each frame to use [default: the centre square]")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--sample-every", default=300, show_default=True, type=click.FloatRange(min=0),
              help="seconds between checkpoints, samples.png and preview.gif")
@click.option("--threads", type=click.IntRange(1), help="CPU threads per process [default: PyTorch's]")
def train_command(footage, out, size, minutes, steps, batch, max_gap, crop, seed, sample_every, threads) -> None:
    """Train a model on FOLDER: videos (.mp4 .mov .mkv .webm .avi .gif) and/or folders of frames,
    one video each, filmed with a still camera. Run it again to resume; run it under torchrun to
    train on several processes or machines.

    \b
    Examples:
      eqsdk train clips/ --out runs/mine --size 64 --minutes 60
      torchrun --standalone --nproc_per_node=2 "$(command -v eqsdk)" train clips/ --out runs/mine --steps 200
      eqsdk export runs/mine --out bundles/mine
    """
    with training_code():
        import torch
        from train import distributed
        from train.footage import FootageRun, train_on_footage
    if threads:
        torch.set_num_threads(threads)
    run = FootageRun(Path(footage), Path(out), int(size), steps, minutes, batch, max_gap, crop, seed, sample_every)
    ckpt = train_on_footage(run, "eqsdk train " + shlex.join(sys.argv[2:]))
    if distributed.is_main_process():
        click.echo(f"wrote {Path(out) / 'last.pt'} (step {ckpt['step']}); next: eqsdk export {out} --out BUNDLE",
                   err=True)


@cli.command("export")
@click.argument("run", metavar="RUN")
@click.option("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
@click.option("--name", help="the bundle's name [default: the folder's name]")
@click.option("--eval-footage", metavar="FOLDER",
              help="evaluate on every video of FOLDER (clips the run never saw) [default: the run's held-out videos]")
@click.option("--force", is_flag=True, help="replace an existing bundle")
def export_command(run, out, name, eval_footage, force) -> None:
    """Export a training run (its folder, or a checkpoint .pt) as a model bundle: the four graphs,
    each checked against PyTorch, with its manifest. A run of `eqsdk train` is first evaluated on
    held-out videos (RUN/eval/: reconstruction beside the video-frames baseline, background
    stability, transfer.png); the figures go into the manifest and the bundle's model-card.md.
    Render with it: --model BUNDLE.

    \b
    Example:
      eqsdk export runs/mine --out bundles/mine
      eqsdk animate --model bundles/mine --char a.png --drive walk.mp4 -o out.gif
    """
    import shutil

    with training_code():
        from export.to_onnx import export_bundle
        from train.checkpoint import read_checkpoint
        from train.evaluate_footage import evaluate_run, markdown
    checkpoint = Path(run) / "last.pt" if Path(run).is_dir() else Path(run)
    if Path(out).is_file() or (Path(out).is_dir() and any(Path(out).iterdir()) and not force):
        raise InputError(f"bundle folder {out!r} exists; expected a new or empty folder, or --force to replace it")
    footage_run = str((read_checkpoint(checkpoint).get("train_config") or {}).get("dataset", "")).startswith("videos:")
    evaluation = None
    if footage_run:
        evaluation = evaluate_run(checkpoint, checkpoint.parent / "eval", footage=eval_footage)
        click.echo(f"evaluated on {len(evaluation['val_videos'])} held-out videos: {checkpoint.parent / 'eval'}",
                   err=True)
    elif eval_footage:
        raise click.UsageError("--eval-footage: RUN was not trained on footage (eqsdk train)")
    manifest = export_bundle(checkpoint, Path(out), name or Path(out).name, evaluation, force=force)
    if evaluation:
        (Path(out) / "model-card.md").write_text(f"# {manifest.name}\n\nTrained by `{manifest.training.command}`"
                                                 f" ({manifest.training.minutes} min, step "
                                                 f"{manifest.training.step}).\n\n" + markdown(evaluation))
        shutil.copyfile(checkpoint.parent / "eval" / "transfer.png", Path(out) / "transfer.png")
    click.echo(f"wrote {out} (model {manifest.name}, {manifest.config['image_size']}px; parity with PyTorch "
               f"max abs diff {max(manifest.parity.values()):.1e})", err=True)


@cli.command("export-triton")
@click.argument("bundle", metavar="BUNDLE")
@click.option("--out", required=True, metavar="REPO", help="model repository folder to write (new or empty)")
@click.option("--max-batch-size", default=BATCH, show_default=True, type=click.IntRange(1),
              help="largest batch each model and the ensemble accept")
@click.option("--force", is_flag=True, help="replace an existing model repository")
def export_triton(bundle, out, max_batch_size, force) -> None:
    """Write BUNDLE (a bundled model's name or a bundle directory) as a Triton Inference Server
    model repository: each graph with its config.pbtxt and dynamic batching, and the ensemble
    `render` (x_c, x_b, x_t1, x_t2 -> image, float32, unclipped).

    \b
    Example:
      eqsdk export-triton mnist --out triton-repo
      tritonserver --model-repository triton-repo
    """
    from eqsdk.triton import triton_command

    for line in triton_command(bundle, out, max_batch_size, force):
        click.echo(line)


@cli.command()
@click.option("--model", default=DEFAULT_MODEL, metavar="NAME|PATH", help=MODEL_HELP)
@click.option("--backend", "backends", default="cpu", metavar="NAMES",
              help="comma-separated backends (cpu, cuda, tensorrt, openvino), or 'all' for every one "
                   "available [default: cpu]")
@click.option("--batch", "batches", default="1,8,32", metavar="SIZES",
              help="comma-separated batch sizes, 1 to 1024 [default: 1,8,32]")
@click.option("--runs", default=200, type=click.IntRange(10, 100_000),
              help="timed runs per measurement, at most [default: 200]")
@click.option("--threads", type=click.IntRange(1, 256), help="CPU threads per graph [default: up to 2]")
@precision_option
@click.option("--thorough", is_flag=True,
              help="time every run asked for; by default a measurement stops after about "
                   "1.5 s (at least 20 runs), so that the whole bench takes a minute or two")
@check_motion_option
@click.option("--json", "json_path", metavar="FILE", help="also write the report as JSON")
@click.option("--force", is_flag=True, help="overwrite the --json file if it exists")
def bench(model, backends, batches, runs, threads, precision, thorough, check_motion, json_path, force) -> None:
    """Latency of each graph and of the full, new-motion, new-frame and new-background paths.

    \b
    Example:
      eqsdk bench --batch 1,8,32 --json bench.json
    """
    from eqsdk.bench import BUDGET_S, bench as run_bench, check_json_path, parse_backends, parse_batches, table
    from eqsdk.bundle import bundle_dir, read_manifest

    sizes = parse_batches(batches)  # every argument checked before anything is measured
    names = parse_backends(backends)
    if json_path:
        check_json_path(Path(json_path), force)
    read_manifest(bundle_dir(model))
    reports = []
    for name in names:
        def progress(done: int, total: int, what: str, name=name) -> None:
            click.echo(f"eqsdk bench: {name} [{done}/{total}] {what}", err=True)

        report = run_bench(model, name, sizes, runs, threads=threads, precision=precision, check_motion=check_motion,
                           budget_s=None if thorough else BUDGET_S, progress=progress)
        click.echo(table(report) + "\n")
        reports.append(report)
    if json_path:
        from eqsdk.bench import write_json

        write_json(reports, Path(json_path), force)
        click.echo(f"wrote {json_path}", err=True)


@cli.command()
@click.option("--model", "models", multiple=True, metavar="NAME|PATH",
              help=f"{MODEL_HELP}; repeat to serve several (the first is the default)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0: any free port")
@click.option("--backend", default="cpu", metavar="NAME", help=BACKEND_HELP)
@click.option("--max-batch", default=BATCH, show_default=True, type=click.IntRange(1, 1024),
              help="largest batch of concurrent requests run as one call")
@click.option("--max-wait-ms", default=2.0, show_default=True, type=click.FloatRange(0, 1000),
              help="longest a batch waits for requests still being read")
@click.option("--max-in-flight", default=64, show_default=True, type=click.IntRange(1),
              help="requests served at once; more are refused with 503")
@click.option("--access-log/--no-access-log", default=True, help="log each request [default: on]")
def serve(models, host, port, backend, max_batch, max_wait_ms, max_in_flight, access_log) -> None:
    """Serve the renderer over HTTP: render, encode once and compose, as PNG and JSON; API
    docs at /docs. Needs: pip install "eqsdk[serve]"

    \b
    Example:
      eqsdk serve --model mnist --model sprites --port 8000
      curl -F char=@examples/case1/char.png -F bg=@examples/case1/bg.png \\
          -F anim_start=@examples/case1/anim_start.png -F anim_end=@examples/case1/anim_end.png \\
          http://127.0.0.1:8000/v1/render -o out.png
    """
    from eqsdk.server import Limits, serve as run_server

    run_server(list(models) or [DEFAULT_MODEL], host, port, backend, max_batch, max_wait_ms,
               Limits(max_in_flight=max_in_flight), access_log, echo=lambda line: click.echo(line, err=True))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    prefix = "note" if issubclass(category, ResizeWarning) else "warning"
    click.echo(f"eqsdk: {prefix}: {message}", err=True)


def check_anim_count(argv: list[str]) -> None:
    """click's nargs=2 would take a following option as the second image; count them first."""
    for k, arg in enumerate(argv):
        if arg == "--anim":
            rest = argv[k + 1:]
            n = next((i for i, a in enumerate(rest) if a.startswith("-") and len(a) > 1), len(rest))
            if n != 2:
                raise click.UsageError(f"--anim: expected 2 images (START END), got {n}")


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that `finally` blocks remove
    temporary files (not an Exception: nothing may catch it on the way out)."""


def on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv=None) -> int:
    warnings.showwarning = _show_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    try:
        return run(argv)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def run(argv: list[str]) -> int:
    try:
        check_anim_count(argv)
        cli.main(args=argv, prog_name="eqsdk", standalone_mode=False)
    except click.exceptions.Exit as e:  # --help, --version
        return e.exit_code
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "eqsdk"
        click.echo(f"{cmd}: error: {e.format_message()} (see '{cmd} --help')", err=True)
        return 2
    except EqsdkError as e:
        click.echo(f"eqsdk: error: {e}", err=True)
        return 2
    except click.ClickException as e:  # a check that failed, e.g. verify
        click.echo(f"eqsdk: error: {e.format_message()}", err=True)
        return 1
    except (click.Abort, KeyboardInterrupt):
        click.echo("eqsdk: interrupted", err=True)
        return 130  # 128 + SIGINT, as the shell reports
    except Terminated:
        click.echo("eqsdk: terminated", err=True)
        return 143  # 128 + SIGTERM
    except Exception as e:  # a bug, not bad input: one line, traceback only on request
        if os.environ.get("EQSDK_DEBUG"):
            raise
        click.echo(f"eqsdk: internal error: {type(e).__name__}: {e} "
                   "(set EQSDK_DEBUG=1 for a traceback)", err=True)
        return 1
    return 0


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
