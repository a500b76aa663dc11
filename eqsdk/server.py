"""eqsdk serve: the renderer over HTTP (FastAPI and uvicorn, the `serve` extra).

Routes (OpenAPI docs at /docs):

    POST /v1/render              multipart images char, bg, anim_start, anim_end [model] -> PNG
    POST /v1/encode/character    multipart image [model] -> {"id", "model", "kind", "frames"}
    POST /v1/encode/background   multipart image [model] -> the same
    POST /v1/encode/motion       multipart anim_start, anim_end, or motion (.eqm) [model] -> the same
    POST /v1/compose             JSON or form: character, motion, background ids [frame, model] -> PNG
    GET  /v1/models, /v1/stats, /healthz
    GET  /                       the live page, and its routes (eqsdk.live_page)

Uploads get the checks of files (eqsdk.images: formats, declared pixels before decoding, modes,
EXIF orientation); bad input is a JSON {"error": one line} with 400, 404 (unknown id or model),
413 (a body over the limit, counted as it is read) or 503 (over the requests in flight); a 500
is a bug. Concurrent requests for one model are run in batches (eqsdk.batcher) on worker
threads, off the event loop; encodings live in a bounded cache (eqsdk.encoding_cache).
"""
import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from eqsdk import __version__, images, motion_file
from eqsdk.batcher import Batcher
from eqsdk.bundle import DEFAULT_MODEL, MODELS
from eqsdk.encoding_cache import EncodingCache, UnknownIdError
from eqsdk.errors import BackendError, EqsdkError, InputError
from eqsdk.renderer import BATCH, Encoding, Renderer

try:
    import fastapi
    import python_multipart  # noqa: F401 - FastAPI reads multipart forms with it
    import uvicorn
    from fastapi import File, Form, Request, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
except ModuleNotFoundError as e:
    raise BackendError(f"eqsdk serve needs FastAPI, uvicorn and python-multipart ({e.name} is "
                       'missing): pip install "eqsdk[serve]"') from None

COMPOSED = ("character", "motion", "background")  # /v1/compose's ids
DRAIN_BYTES = 64 << 20  # a body over the limit is read and dropped up to this, so the 413 arrives


@dataclass(frozen=True)
class Limits:
    """What one server accepts."""
    max_upload_bytes: int = 8 << 20  # a request's body, counted as it is read
    max_pixels: int = images.MAX_PIXELS  # an uploaded image's declared width x height
    max_in_flight: int = 64  # /v1/ requests being served at once; more get 503
    cache_entries: int = 1024  # encodings kept (least recently used go first)
    cache_bytes: int = 256 << 20  # and their arrays' bytes together
    cache_max_age_s: float = 1800.0  # an encoding unused this long goes

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InputError(f"limits: {name} {value!r}; expected a positive number")
        if self.max_pixels > images.MAX_PIXELS:
            raise InputError(f"limits: max_pixels {self.max_pixels:,}; expected at most "
                             f"{images.MAX_PIXELS:,} (eqsdk.images.MAX_PIXELS)")


class UnknownModelError(InputError):
    """A request names a model the server does not serve."""


class Served:
    """One loaded model and its batchers: render, compose, and one per kind of encoding."""

    def __init__(self, renderer: Renderer, max_batch: int, max_wait_s: float):
        self.renderer, self.name, self.size = renderer, renderer.name, renderer.image_size
        batcher = lambda run, what: Batcher(run, f"{self.name}-{what}", max_batch, max_wait_s)  # noqa: E731
        self.render = batcher(self._render, "render")
        self.compose = batcher(self._compose, "compose")
        self.encode = {"character": batcher(lambda xs: self._features(xs, "f_c", "character"), "character"),
                       "background": batcher(lambda xs: self._features(xs, "f_b", "background"), "background"),
                       "motion": batcher(self._motions, "motion")}

    def batchers(self) -> dict[str, Batcher]:
        return {"render": self.render, "compose": self.compose,
                **{f"encode_{k}": b for k, b in self.encode.items()}}

    def close(self) -> None:
        for b in self.batchers().values():
            b.close()

    # The batched calls, on a batcher's worker thread. Items are checked float32 (3, S, S) images.
    def _render(self, items: list[tuple]) -> list[bytes]:
        x_c, x_t1, x_t2, x_b = (np.stack(x) for x in zip(*items))
        return [png(image) for image in images.to_uint8(self.renderer.render_arrays(x_c, x_t1, x_t2, x_b))]

    def _features(self, items: list[np.ndarray], graph: str, kind: str) -> list[Encoding]:
        b = self.renderer.backend
        z = b.run(graph, x=b.upload(np.stack(items)))["z"]  # (B, C, 16, 16)
        return [Encoding(kind, own(b.rows(z, k, k + 1)), 1, True) for k in range(len(items))]

    def _motions(self, items: list[tuple]) -> list[Encoding]:
        x_t1, x_t2 = (np.stack(x) for x in zip(*items))
        theta, origin = self.renderer.motion_arrays(x_t1, x_t2)  # (B, 2, 3), (B, 2) on the host
        return [Encoding("motion", (theta[k:k + 1].copy(), origin[k:k + 1].copy()), 1, True)
                for k in range(len(items))]

    def _compose(self, items: list[tuple]) -> list[bytes]:
        n, b = len(items), self.renderer.backend
        chars, motions, bgs = zip(*items)  # single-item encodings, joined into batches of n
        character = Encoding("character", b.concat([e.data for e in chars]), n, False)
        background = Encoding("background", b.concat([e.data for e in bgs]), n, False)
        motion = Encoding("motion", tuple(np.concatenate(a) for a in zip(*(e.data for e in motions))), n, False)
        return [png(image) for image in images.to_uint8(self.renderer.compose_arrays(character, motion, background, n))]


def own(t):
    """A row of a batch's host array as its own copy, so a cached encoding does not keep the
    whole batch alive (device tensors are views that share their batch's buffer)."""
    return t.copy() if isinstance(t, np.ndarray) else t


def png(image: np.ndarray) -> bytes:
    """(S, S, 3) uint8 -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class Service:
    """The models served, the encodings cache and the counters of one app."""

    def __init__(self, models: Sequence, backend: str, limits: Limits, max_batch: int, max_wait_ms: float):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= 1024:
            raise InputError(f"max_batch: got {max_batch!r}; expected an integer from 1 to 1024")
        if not (isinstance(max_wait_ms, (int, float)) and 0 <= max_wait_ms <= 1000):
            raise InputError(f"max_wait_ms: got {max_wait_ms!r}; expected 0 to 1000")
        if isinstance(models, (str, Path, Renderer)):
            models = [models]
        if not models:
            raise InputError("models: got none; expected at least one model name or bundle path")
        import eqsdk

        self.limits, self.backend = limits, backend
        self.models: dict[str, Served] = {}
        for m in models:
            renderer = m if isinstance(m, Renderer) else eqsdk.load(m, backend=backend)
            if renderer.name in self.models:
                raise InputError(f"models: two bundles are named {renderer.name!r}; expected one "
                                 "bundle per name")
            renderer.warmup()
            self.models[renderer.name] = Served(renderer, max_batch, max_wait_ms / 1000)
        self.default = next(iter(self.models))
        self.cache = EncodingCache(limits.cache_entries, limits.cache_max_age_s, limits.cache_bytes)
        self.in_flight = self.peak_in_flight = self.refused = self.too_large = 0

    def model(self, name: str | None) -> Served:
        if name in (None, ""):
            return self.models[self.default]
        if name not in self.models:
            raise UnknownModelError(f"model {str(name)[:80]!r} is not served here; expected one of "
                                    f"{', '.join(self.models)}")
        return self.models[name]

    def close(self) -> None:
        for s in self.models.values():
            s.close()

    def stats(self) -> dict:
        return {"in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight,
                "refused_busy": self.refused, "refused_too_large": self.too_large,
                "cache": self.cache.stats(),
                "models": {name: {k: b.stats() for k, b in s.batchers().items()}
                           for name, s in self.models.items()}}


# Uploads: the checks eqsdk.images makes of files, on bytes.
def open_upload(data: bytes, where: str, expected: str, limit: str) -> Image.Image:
    """Pillow's lazy image of an upload, its opening errors as InputError: `expected` names the
    formats, `limit` the pixels the server takes."""
    try:
        # Not in warnings.catch_warnings, which changes process-wide filters (uploads are read on
        # many threads): a DecompressionBombWarning may be logged; the caller refuses the size.
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputError(f"{where} is not an image Pillow can read; expected {expected}") from None
    except Image.DecompressionBombError:  # over Pillow's own limit, far above ours
        raise InputError(f"{where}: image declares more pixels than Pillow allows; expected at most "
                         f"{limit}") from None
    except images.DECODE_ERRORS as e:
        raise InputError(f"{where}: cannot read ({images.reason(e)})") from None


def decode_image(data: bytes, name: str, filename: str | None, size: int, max_pixels: int,
                 notes: list[str]) -> np.ndarray:
    """An uploaded image file -> float32 (3, size, size) in [0, 1], as eqsdk.images.to_array
    reads the same file from disk: declared size checked before decoding, upright, RGB, resized
    (BILINEAR; said in `notes`)."""
    where = f"{name} {upload_name(filename)}({len(data):,} bytes)"
    if not data:
        raise InputError(f"{name}: an empty upload; expected an image file (PNG, JPEG, GIF, BMP, ...)")
    im = open_upload(data, where, "PNG, JPEG, GIF, BMP, ...", f"{max_pixels:,}: downscale it first")
    with im:
        images.check_pixels(im.size, where)
        w, h = im.size
        if w * h > max_pixels:
            raise InputError(f"{where}: image declares {w}x{h} = {w * h:,} pixels; expected at most "
                             f"{max_pixels:,} on this server: downscale it first")
        try:
            im.load()
            im = images.to_rgb(images.upright(im), where)
        except EqsdkError:
            raise
        except images.DECODE_ERRORS as e:
            raise InputError(f"{where}: cannot read, the file is corrupt or truncated "
                             f"({images.reason(e)})") from None
    if im.size != (size, size):  # as to_array resizes, with a note instead of a warning
        notes.append(f"{name}: resized from {im.width}x{im.height} to {size}x{size}, the model's size")
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return images.to_array(im, size, name)


def decode_motion(data: bytes, filename: str | None) -> motion_file.Motion:
    """An uploaded motion file (.eqm) -> Motion, every field checked as load_motion checks a file."""
    where = f"motion {upload_name(filename)}({len(data):,} bytes)"
    if len(data) > motion_file.MAX_BYTES:
        raise motion_file.MotionFileError(f"{where}: expected a motion file of at most "
                                          f"{motion_file.MAX_BYTES:,} bytes")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=motion_file.refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise motion_file.MotionFileError(f"{where}: cannot be parsed as UTF-8 JSON ({images.reason(e)}); "
                                          "expected a motion file written by eqsdk encode-motion") from None
    return motion_file.parse(obj, Path(filename or "upload"))


def upload_name(filename: str | None) -> str:
    """A client's file name for a message: quoted and cut short; nothing when there is none."""
    if not filename:
        return ""
    return repr(filename if len(filename) <= 60 else filename[:57] + "...") + " "


def uploaded_image(upload, name: str, size: int, max_pixels: int, notes: list[str]) -> np.ndarray:
    """A form's image file -> float32 (3, size, size), checked (decode_image)."""
    data, filename = read_upload(upload, name)
    return decode_image(data, name, filename, size, max_pixels, notes)


def read_upload(upload, name: str) -> tuple[bytes, str | None]:
    """The bytes of a form field that should be a file (on a worker thread: it may be on disk)."""
    if not hasattr(upload, "file"):
        raise InputError(f"{name}: got a text field; expected a file upload (multipart/form-data, "
                         f"curl -F {name}=@FILE)")
    upload.file.seek(0)
    return upload.file.read(), upload.filename


# Requests in flight and the size of their bodies, before any route runs.
class Guard:
    """ASGI middleware over POST /v1/...: refuses requests beyond max_in_flight (503) and bodies beyond
    max_upload_bytes (413), counting the bytes as they arrive, whatever Content-Length says."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        s, limit = self.service, self.service.limits.max_upload_bytes
        if s.in_flight >= s.limits.max_in_flight:
            s.refused += 1
            return await error_response(f"busy: {s.in_flight} requests in flight; expected at most "
                                        f"{s.limits.max_in_flight} at once, retry shortly", 503,
                                        {"retry-after": "1"})(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max(limit, DRAIN_BYTES):  # refused unread
            s.too_large += 1
            return await error_response(too_large(f"{int(declared):,} bytes", limit), 413,
                                        {"connection": "close"})(scope, receive, send)
        s.in_flight += 1
        s.peak_in_flight = max(s.peak_in_flight, s.in_flight)
        try:
            await self.app(scope, self.counting(receive, limit), send)
        finally:
            s.in_flight -= 1

    def counting(self, receive, limit: int):
        got = 0

        async def counted():
            nonlocal got
            message = await receive()
            got += len(message.get("body", b""))
            if got > limit:
                self.service.too_large += 1
                while message.get("more_body") and got <= DRAIN_BYTES:  # read and drop the rest,
                    message = await receive()  # so that the client reads the 413 it is sent
                    got += len(message.get("body", b""))
                raise HTTPException(413, too_large(f"more than {limit:,} bytes", limit))
            return message
        return counted


def too_large(got: str, limit: int) -> str:
    return f"request body of {got}; expected at most {limit:,} bytes (the server's max_upload_bytes)"


def error_response(message: str, status: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# The app.
ROUTES = {
    "/v1/render": "multipart/form-data with the image files char, bg, anim_start, anim_end "
                  "(and optionally the field model)",
    "/v1/encode/character": "multipart/form-data with the image file image (and optionally model)",
    "/v1/encode/background": "multipart/form-data with the image file image (and optionally model)",
    "/v1/encode/motion": "multipart/form-data with the image files anim_start and anim_end, or a "
                         "motion file motion (.eqm) (and optionally model)",
    "/v1/compose": "a JSON object or form with the ids character, motion, background (and "
                   "optionally frame, model)",
    "/v1/encode/clip": "multipart/form-data with the file clip (an animated GIF, PNG or WebP; and "
                       "optionally model)",
}
ERRORS = {code: {"description": what, "content": {"application/json": {"example": {"error": "..."}}}}
          for code, what in ((400, "bad input: what was received, what was expected"),
                             (404, "unknown id or model"), (413, "request body too large"),
                             (503, "too many requests in flight"))}
PNG_RESPONSE = {200: {"content": {"image/png": {}}, "description": "the render, a PNG at the model's size"}}


def create_app(models: Sequence = (DEFAULT_MODEL,), backend: str = "cpu", limits: Limits | None = None,
               max_batch: int = BATCH, max_wait_ms: float = 2.0) -> "fastapi.FastAPI":
    """The HTTP app serving `models` (bundled names, bundle paths or loaded Renderers; the first
    is the default) on `backend`. Requests for one model are batched: up to max_batch items, and
    a wait of at most max_wait_ms for requests still being read. Run it with uvicorn
    (`eqsdk serve`, or `running(app)` in a thread)."""
    service = Service(models, backend, limits or Limits(), max_batch, max_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    app = fastapi.FastAPI(title="eqsdk", version=__version__, lifespan=lifespan, description=(
        "Render a character on a background, moved as a driving character moved between two "
        "frames. Encode inputs once (/v1/encode/...) and compose them many times (/v1/compose)."))
    app.state.service = service
    app.add_middleware(Guard, service=service)

    @app.exception_handler(EqsdkError)
    async def bad_input(request, e: EqsdkError):
        status = 404 if isinstance(e, (UnknownIdError, UnknownModelError)) else 400
        return error_response(str(e), status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e: RequestValidationError):
        return error_response(validation_message(e.errors(), ROUTES.get(request.url.path, "")), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        message = str(e.detail)
        if e.status_code == 404:
            message = (f"no route {request.method} {request.url.path[:100]}; expected one of "
                       f"{', '.join(ROUTES)}, /v1/models, /v1/stats, /healthz (see /docs)")
        elif e.status_code == 405:
            message = f"{request.method} {request.url.path}: method not allowed; expected " + (
                "POST" if request.url.path in ROUTES else "GET")
        return error_response(message, e.status_code, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request, e: Exception):  # a bug of ours: said as such; uvicorn logs the traceback
        return error_response(f"internal error: {type(e).__name__}: {e}", 500)

    async def run(batcher: Batcher, work, *args):
        """Read and check the uploads on a worker thread (`work`), then submit to the batcher."""
        with batcher.arriving():
            item = await run_in_threadpool(work, *args)
            future = batcher.submit(item)
        return await asyncio.wrap_future(future)

    def png_response(data: bytes, notes: list[str], served: Served) -> Response:
        headers = {"x-eqsdk-model": served.name}
        if notes:
            headers["x-eqsdk-notes"] = "; ".join(notes)[:1000]
        return Response(data, media_type="image/png", headers=headers)

    @app.post("/v1/render", response_class=Response, responses={**PNG_RESPONSE, **ERRORS})
    async def render(char: UploadFile = File(..., description="image whose character is rendered"),
                     bg: UploadFile = File(..., description="image whose background is used"),
                     anim_start: UploadFile = File(..., description="first frame of the motion"),
                     anim_end: UploadFile = File(..., description="last frame of the motion"),
                     model: str | None = Form(None, description="a served model [default: the first]")):
        """The character of `char` on the background of `bg`, moved as the character moved from
        `anim_start` to `anim_end`: a PNG at the model's size."""
        served, notes = service.model(model), []

        def work():
            return tuple(uploaded_image(f, name, served.size, service.limits.max_pixels, notes)
                         for f, name in ((char, "char"), (anim_start, "anim_start"),
                                         (anim_end, "anim_end"), (bg, "bg")))
        return png_response(await run(served.render, work), notes, served)

    async def encode_images(kind: str, image, model: str | None) -> dict:
        served, notes = service.model(model), []
        work = lambda: uploaded_image(image, "image", served.size,  # noqa: E731
                                      service.limits.max_pixels, notes)
        encoding = await run(served.encode[kind], work)
        return encoded(kind, encoding, served, notes)

    def encoded(kind: str, encoding: Encoding, served: Served, notes: list[str]) -> dict:
        out = {"id": service.cache.put(served.name, encoding), "model": served.name, "kind": kind,
               "frames": encoding.count, "expires_after_unused_s": service.limits.cache_max_age_s}
        return {**out, "notes": notes} if notes else out

    @app.post("/v1/encode/character", responses=ERRORS)
    async def encode_character(image: UploadFile = File(..., description="image whose character is encoded"),
                               model: str | None = Form(None, description="a served model [default: the first]")):
        """f_c of one image: an id for /v1/compose's `character`."""
        return await encode_images("character", image, model)

    @app.post("/v1/encode/background", responses=ERRORS)
    async def encode_background(image: UploadFile = File(..., description="image whose background is encoded"),
                                model: str | None = Form(None, description="a served model [default: the first]")):
        """f_b of one image: an id for /v1/compose's `background`."""
        return await encode_images("background", image, model)

    @app.post("/v1/encode/motion", responses=ERRORS)
    async def encode_motion(anim_start: UploadFile | None = File(None, description="first frame of the motion"),
                            anim_end: UploadFile | None = File(None, description="last frame of the motion"),
                            motion: UploadFile | None = File(None, description="or a saved motion (.eqm, "
                                                             "eqsdk encode-motion) of this model"),
                            model: str | None = Form(None, description="a served model [default: the first]")):
        """T^Z's motion from `anim_start` to `anim_end`, or the frames of a saved motion file:
        an id for /v1/compose's `motion` (`frames` of them; compose picks one with `frame`)."""
        served, notes = service.model(model), []
        frames = anim_start is not None or anim_end is not None
        if frames == (motion is not None) or (frames and (anim_start is None or anim_end is None)):
            got = ", ".join(n for n, f in (("anim_start", anim_start), ("anim_end", anim_end),
                                           ("motion", motion)) if f is not None) or "none of them"
            raise InputError(f"encode motion: got {got}; expected the image files anim_start and "
                             "anim_end, or a motion file motion (.eqm)")
        if motion is not None:
            saved = await run_in_threadpool(lambda: decode_motion(*read_upload(motion, "motion")))
            encoding = served.renderer.motion_encoding(saved)  # MotionModelError: another bundle's
            return encoded("motion", encoding, served, notes)

        def work():
            return tuple(uploaded_image(f, name, served.size, service.limits.max_pixels, notes)
                         for f, name in ((anim_start, "anim_start"), (anim_end, "anim_end")))
        return encoded("motion", await run(served.encode["motion"], work), served, notes)

    @app.post("/v1/compose", response_class=Response, responses={**PNG_RESPONSE, **ERRORS},
              openapi_extra={"requestBody": {"required": True, "content": {
                  t: {"schema": COMPOSE_SCHEMA} for t in ("application/json", "multipart/form-data",
                                                          "application/x-www-form-urlencoded")}}})
    async def compose(request: Request):
        """The encoded character moved by the encoded motion (its frame `frame`, default 0) on the
        encoded background: only the warp and g run. A PNG at the model's size."""
        fields = await compose_fields(request)
        served = service.model(fields.get("model"))
        character, motion, background = (service.cache.get(fields[k], k, served.name) for k in COMPOSED)
        frame = frame_index(fields.get("frame", 0), motion.count)
        if motion.count > 1:
            motion = Encoding("motion", tuple(a[frame:frame + 1] for a in motion.data), 1, True)
        future = served.compose.submit((character, motion, background))
        return png_response(await asyncio.wrap_future(future), [], served)

    @app.get("/v1/models")
    async def list_models():
        """The models served: name, image size, backend; the first is the default."""
        return {"default": service.default, "models": [
            {"name": s.name, "image_size": s.size, "backend": s.renderer.backend.name,
             "runtime": s.renderer.backend.describe(), "description": MODELS.get(s.name, "")}
            for s in service.models.values()]}

    @app.get("/v1/stats")
    async def stats():
        """Requests in flight, refusals, the encodings cache, and each batcher's batches."""
        return service.stats()

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "models": list(service.models)}

    from eqsdk import live_page  # imports this module: here, not at the top

    live_page.add_routes(app, service)
    return app


COMPOSE_SCHEMA = {"type": "object", "required": list(COMPOSED), "properties": {
    "character": {"type": "string", "description": "id from /v1/encode/character"},
    "motion": {"type": "string", "description": "id from /v1/encode/motion"},
    "background": {"type": "string", "description": "id from /v1/encode/background"},
    "frame": {"type": "integer", "default": 0, "description": "frame of a saved motion's encoding"},
    "model": {"type": "string", "description": "a served model [default: the first]"}}}


async def compose_fields(request: Request) -> dict:
    """/v1/compose's fields, from a JSON object or a form, each checked to be present and text."""
    expected = ROUTES["/v1/compose"]
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = await request.body()
        try:
            fields = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise InputError(f"compose: a body that is not JSON ({images.reason(e)}); expected {expected}") from None
        if not isinstance(fields, dict):
            raise InputError(f"compose: JSON {type(fields).__name__}; expected {expected}")
    elif kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = dict(await request.form())
    else:
        raise InputError(f"compose: content type {kind[:60] or 'none'!r}; expected {expected}")
    missing = [k for k in COMPOSED if k not in fields]
    if missing:
        raise InputError(f"compose: missing {', '.join(missing)}; expected {expected}")
    for k in (*COMPOSED, "model"):
        if k in fields and not isinstance(fields[k], str):
            raise InputError(f"compose: {k} is {type(fields[k]).__name__}; expected an id (text)")
    return fields


def frame_index(value, frames: int) -> int:
    """compose's `frame`: an integer in 0..frames-1 (JSON number or form text)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < frames:
        raise InputError(f"compose: frame {repr(value)[:40]}; expected an integer from 0 to "
                         f"{frames - 1} (the motion has {frames} frame{'s' if frames > 1 else ''})")
    return value


def validation_message(errors: list[dict], expected: str) -> str:
    """FastAPI's validation errors -> one line: the first field wrong, and what was expected."""
    first = errors[0] if errors else {}
    field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
    if first.get("type") == "missing":
        got = f"missing {field}"
    elif "UploadFile" in str(first.get("msg", "")) or first.get("type") in ("value_error", "is_instance_of"):
        got = f"{field} is not a file upload"
    else:
        got = f"{field}: {first.get('msg', 'invalid')}"
    return f"{got}; expected {expected or 'see /docs'}"


# Running it.
@contextmanager
def running(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
            access_log: bool = False) -> Iterator[str]:
    """The app served by uvicorn on a thread of this process for the block; yields its base URL
    (port 0: a free port). Stopped, and its batchers closed, when the block ends."""
    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=access_log))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="eqsdk-serve", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise BackendError("eqsdk serve: the server stopped while starting (see its log)")
            time.sleep(0.01)
        yield f"http://{host_for_url(host)}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or an InputError saying why not."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
        # a response's head and body wait on the client's delayed ACK (40 ms a request).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port} ({e.strerror or images.reason(e)}); "
                         "expected a free port (--port) on an address of this machine (--host)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(models: Sequence, host: str = "127.0.0.1", port: int = 8000, backend: str = "cpu",
          max_batch: int = BATCH, max_wait_ms: float = 2.0, limits: Limits | None = None,
          access_log: bool = True, echo=print) -> None:
    """eqsdk serve: load the models, listen, serve until interrupted (uvicorn's Ctrl-C)."""
    sock = bind(host, port)  # before loading: a port in use is said at once
    app = create_app(models, backend, limits, max_batch, max_wait_ms)
    service: Service = app.state.service
    url = f"http://{host_for_url(host)}:{sock.getsockname()[1]}"
    echo(f"eqsdk serve: {url} (models {', '.join(service.models)}; backend "
         f"{service.models[service.default].renderer.backend.describe()}; live page {url}/, "
         f"docs {url}/docs)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        echo(f"eqsdk serve: note: listening on {host}, reachable from other machines; the service has "
             "no authentication: put it behind a proxy that has")
    uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=access_log)).run(sockets=[sock])

