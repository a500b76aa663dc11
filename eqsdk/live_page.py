"""The live page of eqsdk serve: a character, a background and a driving clip encoded once, then a
slider through the clip composes each frame (only the warp and g run) and the render follows.

Routes added to the app of eqsdk.server:

    GET  /                       the page (eqsdk/web/index.html, app.js, style.css; no CDN)
    GET  /v1/examples            example inputs per served model: characters, backgrounds, clips
    GET  /examples/{file}        one of them (only the files listed: nothing else on disk is served)
    POST /v1/encode/clip         multipart clip (animated GIF/PNG/WebP) [model] -> a motion id with
                                 one frame per clip frame, and the frames as the model sees them

The examples are copies of the repository's examples/ shipped in the package (tests check that
they stay equal), so an installed wheel has them too.
"""
import base64
from pathlib import Path

import numpy as np
from fastapi import File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse
from PIL import Image, ImageSequence
from starlette.exceptions import HTTPException

from eqsdk import images
from eqsdk.errors import EqsdkError, InputError
from eqsdk.server import ERRORS, Service, open_upload, png, read_upload, upload_name

WEB_DIR = Path(__file__).resolve().parent / "web"  # the page's files, shipped as package data
EXAMPLES_DIR = WEB_DIR / "examples"
PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
MAX_CLIP_FRAMES = 1000  # a slider position each; motions of up to motion_file.MAX_FRAMES go by .eqm

MNIST = {"character": ["case1/char.png", "case2/char.png", "case3/char.png"],
         "background": ["case1/bg.png", "case2/bg.png", "case3/bg.png"],
         "drive": ["drive/drive.gif"]}
SPRITES_DRIVES = ["sprites/walk_sequence.gif", "sprites/thrust_sequence.gif"]
# Per bundled model: files under EXAMPLES_DIR (= examples/ of the repository), the first of each
# kind picked when the page opens. A served model not listed here is offered all of them.
EXAMPLES = {
    "mnist": MNIST,
    "sprites": {"character": ["sprites/knight.png", "sprites/unseen.png"],
                "background": ["sprites/knight.png"], "drive": SPRITES_DRIVES},
    "sprites-bg": {"character": ["sprites/knight_bg.png"], "background": ["sprites/knight_bg.png"],
                   "drive": SPRITES_DRIVES},
}
EXAMPLE_FILES = sorted({f for kinds in EXAMPLES.values() for files in kinds.values() for f in files})


def examples_for(model: str) -> dict[str, list[str]]:
    """The example files offered for a model: its own, or every example for a model not listed."""
    if model in EXAMPLES:
        return EXAMPLES[model]
    return {kind: list(dict.fromkeys(f for kinds in EXAMPLES.values() for f in kinds[kind]))
            for kind in MNIST}


def decode_clip(data: bytes, filename: str | None, size: int, max_pixels: int) -> list[np.ndarray]:
    """An uploaded animated image (GIF, PNG, WebP; a still image is a clip of one frame) -> its
    frames as uint8 (size, size, 3), each made RGB and resized (BILINEAR) as to_array would.
    The declared frames x pixels are checked before any frame is decoded."""
    where = f"clip {upload_name(filename)}({len(data):,} bytes)"
    if not data:
        raise InputError("clip: an empty upload; expected an animated GIF, PNG or WebP")
    im = open_upload(data, where, "an animated GIF, PNG or WebP", f"{max_pixels:,} over all frames")
    with im:
        images.check_pixels(im.size, where)
        try:
            count = getattr(im, "n_frames", 1)  # walks the file: a truncated one fails here
            w, h = im.size
            if count > MAX_CLIP_FRAMES or count * w * h > max_pixels:
                raise InputError(f"{where}: {count:,} frames of {w}x{h}; expected at most "
                                 f"{MAX_CLIP_FRAMES:,} frames and {max_pixels:,} pixels over all frames")
            return [np.asarray(images.to_rgb(frame, f"clip frame {k}").resize(
                        (size, size), Image.Resampling.BILINEAR))
                    for k, frame in enumerate(ImageSequence.Iterator(im))]
        except EqsdkError:
            raise
        except images.DECODE_ERRORS as e:
            raise InputError(f"{where}: cannot read, the file is corrupt or truncated "
                             f"({images.reason(e)})") from None


def data_url(image: np.ndarray) -> str:
    """(S, S, 3) uint8 -> a data: URL of its PNG, for the page to show the driving frame."""
    return "data:image/png;base64," + base64.b64encode(png(image)).decode("ascii")


def add_routes(app, service: Service) -> None:
    """The page, its files, the examples and /v1/encode/clip on the app of eqsdk.server."""

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/web/{name}", include_in_schema=False)
    async def page_file(name: str):
        if name not in PAGE_FILES:
            raise HTTPException(404)  # said as an unknown route
        return FileResponse(WEB_DIR / name, media_type=PAGE_FILES[name])

    @app.get("/v1/examples")
    async def list_examples():
        """Example inputs per served model (URLs under /examples/): characters, backgrounds and
        driving clips, the first of each the page's default."""
        return {name: {kind: [{"name": f, "url": f"/examples/{f}"} for f in files]
                       for kind, files in examples_for(name).items()} for name in service.models}

    @app.get("/examples/{file:path}", include_in_schema=False)
    async def example(file: str):
        if file not in EXAMPLE_FILES:
            raise HTTPException(404)
        return FileResponse(EXAMPLES_DIR / file)

    @app.post("/v1/encode/clip", responses=ERRORS)
    async def encode_clip(clip: UploadFile = File(..., description="a driving clip: animated GIF, PNG or WebP"),
                          model: str | None = Form(None, description="a served model [default: the first]")):
        """T^Z's motion from a clip's first frame to each of its frames (Renderer.encode_motion_clip):
        a motion id of `frames` frames for /v1/compose (`frame` picks one), and `frame_images`,
        the clip's frames at the model's size as PNG data: URLs."""
        served = service.model(model)

        def work():
            frames = decode_clip(*read_upload(clip, "clip"), served.size, service.limits.max_pixels)
            motion = served.renderer.encode_motion_clip(frames)
            return served.renderer.motion_encoding(motion), [data_url(f) for f in frames]

        encoding, frame_images = await run_in_threadpool(work)
        return {"id": service.cache.put(served.name, encoding), "model": served.name, "kind": "motion",
                "frames": encoding.count, "expires_after_unused_s": service.limits.cache_max_age_s,
                "frame_images": frame_images}
