"""The eqsdk command line. Exit codes: 0 ok, 2 bad input, 1 internal error."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click

from eqsdk import __version__
from eqsdk.bundle import DEFAULT_MODEL, MODELS
from eqsdk.errors import EqsdkError
from eqsdk.images import ResizeWarning, check_output

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


@cli.command()
@click.option("--char", required=True, metavar="IMAGE", help="image whose character is rendered")
@click.option("--bg", required=True, metavar="IMAGE", help="image whose background is used")
@click.option("--anim", required=True, nargs=2, metavar="START END",
              help="two frames of a video: the character moves as it moved from START to END")
@click.option("-o", "--output", required=True, metavar="FILE", help="image to write (.png, .jpg, ...)")
@click.option("--model", default=DEFAULT_MODEL, show_default=False, metavar="NAME|PATH", help=MODEL_HELP)
@click.option("--scale", default=1, type=click.IntRange(1, 32), help="upscale the output N times for viewing")
@click.option("--force", is_flag=True, help="overwrite the output file if it exists")
def render(char, bg, anim, output, model, scale, force) -> None:
    """Render the character of CHAR on the background of BG, moved as in ANIM.

    \b
    Example:
      eqsdk render --char a.png --bg b.png --anim p.png q.png -o out.png
    """
    import eqsdk

    check_output(Path(output), overwrite=force)  # before any work: nothing is touched on error
    renderer = eqsdk.load(model)
    image = renderer.render(char=char, bg=bg, anim=anim)
    eqsdk.save_image(image, output, overwrite=force, scale=scale)
    click.echo(f"wrote {output} ({image.shape[1] * scale}x{image.shape[0] * scale}, "
               f"model {renderer.name})", err=True)


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


def main(argv=None) -> int:
    warnings.showwarning = _show_warning
    argv = sys.argv[1:] if argv is None else list(argv)
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
    except (click.Abort, KeyboardInterrupt):
        click.echo("eqsdk: interrupted", err=True)
        return 130
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
