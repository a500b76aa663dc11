"""eqsdk serve: a real uvicorn server on a free loopback port, spoken to over HTTP (urllib).

Its renders equal the library's; encode + compose equals render; bad input is a JSON error with
the right status; concurrent requests form batches and each gets its own result; the cache of
encodings drops entries by count and by age; `import eqsdk` does not import FastAPI.
"""
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eqsdk
from eqsdk.batcher import Batcher
from eqsdk.encoding_cache import EncodingCache, UnknownIdError
from eqsdk.errors import InputError
from eqsdk.renderer import Encoding
from eqsdk.server import Limits, create_app, running
from tests.processes import interruptible
from tests.test_bad_images import png_bomb

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FIELDS = ("char", "bg", "anim_start", "anim_end")
MAX_UPLOAD = 200_000


# A client: multipart forms and JSON over urllib, errors returned rather than raised.
def form(fields: dict) -> tuple[bytes, str]:
    """{name: bytes (a file) or str (a text field)} -> multipart/form-data body, content type."""
    boundary = "eqsdk-test-boundary"
    parts = []
    for name, value in fields.items():
        if isinstance(value, str):
            head, data = f'name="{name}"', value.encode()
        else:
            head, data = f'name="{name}"; filename="{name}.png"\r\nContent-Type: image/png', value
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; {head}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def call(url: str, fields: dict | None = None, json_body=None) -> tuple[int, dict, bytes]:
    """GET, or POST a form or JSON -> (status, headers, body)."""
    data, kind = (None, None)
    if fields is not None:
        data, kind = form(fields)
    elif json_body is not None:
        data, kind = json.dumps(json_body).encode(), "application/json"
    request = urllib.request.Request(url, data, {"Content-Type": kind} if kind else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def image(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def error(status: int, body: bytes) -> tuple[int, str]:
    out = json.loads(body)
    assert set(out) == {"error"} and "\n" not in out["error"]
    return status, out["error"]


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def case(k: int) -> dict[str, bytes]:
    return {f: (EXAMPLES / f"case{k}" / f"{f}.png").read_bytes() for f in FIELDS}


@pytest.fixture(scope="module")
def url(mnist, sprites):
    """A server of mnist (the default) and sprites, batches of up to 32 waiting up to 20 ms."""
    app = create_app([mnist, sprites], limits=Limits(max_upload_bytes=MAX_UPLOAD), max_wait_ms=20)
    with running(app) as base:
        yield base


def library_render(r, files: dict[str, bytes]) -> np.ndarray:
    ims = {k: Image.open(io.BytesIO(v)) for k, v in files.items()}
    return r.render(char=ims["char"], bg=ims["bg"], anim=(ims["anim_start"], ims["anim_end"]))


# Renders.
@pytest.mark.parametrize("k", [1, 2, 3])
def test_render_equals_the_library(url, mnist, k):
    status, headers, body = call(f"{url}/v1/render", case(k))
    assert status == 200 and headers["content-type"] == "image/png"
    assert headers["x-eqsdk-model"] == "mnist"
    c = EXAMPLES / f"case{k}"
    expected = mnist.render(char=c / "char.png", bg=c / "bg.png", anim=(c / "anim_start.png", c / "anim_end.png"))
    np.testing.assert_array_equal(image(body), expected)


def test_render_with_another_model(url, sprites):
    files = {f: (EXAMPLES / "sprites" / "knight.png").read_bytes() for f in FIELDS}
    status, headers, body = call(f"{url}/v1/render", {**files, "model": "sprites"})
    assert status == 200 and headers["x-eqsdk-model"] == "sprites"
    np.testing.assert_array_equal(image(body), library_render(sprites, files))


def test_encode_once_compose_equals_render(url, mnist):
    files = case(2)
    ids = {}
    for kind, fields in (("character", {"image": files["char"]}), ("background", {"image": files["bg"]}),
                         ("motion", {"anim_start": files["anim_start"], "anim_end": files["anim_end"]})):
        status, _, body = call(f"{url}/v1/encode/{kind}", fields)
        out = json.loads(body)
        assert status == 200 and out["model"] == "mnist" and out["kind"] == kind and out["frames"] == 1
        assert len(out["id"]) >= 22  # 128 random bits
        ids[kind] = out["id"]
    status, _, by_json = call(f"{url}/v1/compose", json_body=ids)
    assert status == 200
    status, _, by_form = call(f"{url}/v1/compose", ids)
    assert status == 200 and by_form == by_json
    ims = {k: Image.open(io.BytesIO(v)) for k, v in files.items()}
    composed = mnist.compose(mnist.encode_character(ims["char"]),
                             mnist.encode_motion(ims["anim_start"], ims["anim_end"]),
                             mnist.encode_background(ims["bg"]))
    np.testing.assert_array_equal(image(by_json), composed)
    # The warp alone against t_z's fused apply, as in the library (tests/test_runtime.py).
    assert np.abs(image(by_json).astype(int) - library_render(mnist, files)).max() <= 1


def test_a_saved_motion_upload_replays_its_frames(url, mnist, tmp_path):
    """A .eqm file as `motion`: compose's `frame` k equals the library's replay of frame k."""
    clip = eqsdk.read_clip(EXAMPLES / "drive" / "drive.gif")[0]
    path = eqsdk.save_motion(mnist.encode_motion_clip(clip), tmp_path / "walk.eqm")
    char, bg = (EXAMPLES / "case1" / "char.png"), (EXAMPLES / "case1" / "bg.png")
    status, _, body = call(f"{url}/v1/encode/motion", {"motion": path.read_bytes()})
    motion = json.loads(body)
    assert status == 200 and motion["frames"] == len(clip)
    ids = {"motion": motion["id"]}
    for kind, src in (("character", char), ("background", bg)):
        ids[kind] = json.loads(call(f"{url}/v1/encode/{kind}", {"image": src.read_bytes()})[2])["id"]
    replay = mnist.animate(char, bg, eqsdk.load_motion(path))
    for k in (0, len(clip) - 1):
        status, _, body = call(f"{url}/v1/compose", json_body={**ids, "frame": k})
        assert status == 200
        np.testing.assert_array_equal(image(body), replay[k])
    assert error(*call(f"{url}/v1/compose", json_body={**ids, "frame": len(clip)})[::2]) == (
        400, f"compose: frame {len(clip)!r}; expected an integer from 0 to {len(clip) - 1} "
             f"(the motion has {len(clip)} frames)")
    # Another bundle's motion file is refused, saying whose it is.
    status, _, body = call(f"{url}/v1/encode/motion", {"motion": path.read_bytes(), "model": "sprites"})
    status, message = error(status, body)
    assert status == 400 and "mnist" in message and "sprites" in message


# Bad input: one line, what was received and what was expected.
def test_unknown_and_mismatched_ids(url):
    files = case(1)
    char = json.loads(call(f"{url}/v1/encode/character", {"image": files["char"]})[2])["id"]
    bg = json.loads(call(f"{url}/v1/encode/background", {"image": files["bg"]})[2])["id"]
    motion = json.loads(call(f"{url}/v1/encode/motion", {"anim_start": files["anim_start"],
                                                        "anim_end": files["anim_end"]})[2])["id"]
    status, message = error(*call(f"{url}/v1/compose", json_body={"character": "nosuchid", "motion": motion,
                                                                  "background": bg})[::2])
    assert status == 404 and message.startswith("character id 'nosuchid': no such encoding")
    status, message = error(*call(f"{url}/v1/compose", json_body={"character": bg, "motion": motion,
                                                                  "background": bg})[::2])
    assert status == 400 and "is a background encoding; expected an id from POST /v1/encode/character" in message
    status, message = error(*call(f"{url}/v1/compose", json_body={"character": char, "motion": motion,
                                                                  "background": bg, "model": "sprites"})[::2])
    assert status == 400 and "was encoded by model 'mnist'; this request uses model 'sprites'" in message
    status, message = error(*call(f"{url}/v1/compose", json_body={"character": char})[::2])
    assert status == 400 and message.startswith("compose: missing motion, background; expected")
    status, message = error(*call(f"{url}/v1/compose", json_body=[char])[::2])
    assert status == 400 and message.startswith("compose: JSON list; expected a JSON object")


@pytest.mark.parametrize("change, status, says", [
    ({"char": b"GIF89a not really"}, 400, "char 'char.png' (17 bytes) is not an image Pillow can read; "
                                          "expected PNG, JPEG"),
    ({"bg": b""}, 400, "bg: an empty upload; expected an image file"),
    ({"anim_end": png_bomb(9000, 9000)}, 400, "anim_end 'anim_end.png' ("),
    ({"anim_start": case(1)["anim_start"][:200]}, 400, "anim_start 'anim_start.png' (200 bytes): cannot read"),
    ({"char": "text"}, 400, "char is not a file upload; expected multipart/form-data with the image files"),
    ({"bg": None}, 400, "missing bg; expected multipart/form-data with the image files char, bg"),
    ({"model": "nope"}, 404, "model 'nope' is not served here; expected one of mnist, sprites"),
])
def test_bad_uploads_are_400_with_a_message(url, change, status, says):
    fields = {k: v for k, v in {**case(1), **change}.items() if v is not None}
    got, message = error(*call(f"{url}/v1/render", fields)[::2])
    assert got == status and message.startswith(says), message


def test_a_bomb_is_refused_by_its_declared_size(url):
    status, message = error(*call(f"{url}/v1/encode/character", {"image": png_bomb(9000, 9000)})[::2])
    assert status == 400 and "declares 9000x9000 = 81,000,000 pixels; expected at most 67,108,864" in message


def test_a_body_over_the_limit_is_413(url):
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)
    big = png_bytes(noise)
    assert len(big) > MAX_UPLOAD
    status, message = error(*call(f"{url}/v1/encode/character", {"image": big})[::2])
    assert status == 413 and message == (f"request body of more than {MAX_UPLOAD:,} bytes; expected at "
                                         f"most {MAX_UPLOAD:,} bytes (the server's max_upload_bytes)")
    assert call(f"{url}/healthz")[0] == 200  # and the server goes on


def test_routes_and_methods(url):
    status, message = error(*call(f"{url}/v1/nothing")[::2])
    assert status == 404 and message.startswith("no route GET /v1/nothing; expected one of /v1/render")
    assert error(*call(f"{url}/v1/render")[::2]) == (405, "GET /v1/render: method not allowed; expected POST")
    models = json.loads(call(f"{url}/v1/models")[2])
    assert models["default"] == "mnist"
    assert [(m["name"], m["image_size"], m["backend"]) for m in models["models"]] == [
        ("mnist", 64, "cpu"), ("sprites", 64, "cpu")]
    assert json.loads(call(f"{url}/healthz")[2]) == {"status": "ok", "models": ["mnist", "sprites"]}
    assert call(f"{url}/docs")[0] == 200
    paths = json.loads(call(f"{url}/openapi.json")[2])["paths"]
    assert {"/v1/render", "/v1/encode/character", "/v1/encode/motion", "/v1/compose"} <= set(paths)


def test_responses_do_not_wait_on_delayed_acks(url):
    """The server's sockets are TCP_NODELAY: a response's head and body, written apart, would
    otherwise wait for the client's delayed ACK, 40 ms a request on Linux."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        times.append(time.perf_counter() - t0)
    conn.close()
    assert sorted(times)[5] < 0.030, times


def test_a_resized_upload_says_so(url):
    status, headers, body = call(f"{url}/v1/render", {**case(1), "bg": png_bytes(np.zeros((80, 100, 3), np.uint8))})
    assert status == 200 and image(body).shape == (64, 64, 3)
    assert headers["x-eqsdk-notes"] == "bg: resized from 100x80 to 64x64, the model's size"


# Batching.
def test_concurrent_requests_form_batches_and_each_gets_its_own(url, mnist):
    rng = np.random.default_rng(1)
    jobs = [{f: png_bytes(rng.integers(0, 256, (64, 64, 3), np.uint8)) for f in FIELDS} for _ in range(32)]
    before = json.loads(call(f"{url}/v1/stats")[2])["models"]["mnist"]["render"]
    start, results = threading.Barrier(len(jobs)), [None] * len(jobs)

    def client(k):
        start.wait()
        results[k] = call(f"{url}/v1/render", jobs[k])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200] * len(jobs)
    for job, (_, _, body) in zip(jobs, results):
        # Batched and single runs of the graphs may round a pixel apart (MLAS blocks by batch).
        assert np.abs(image(body).astype(int) - library_render(mnist, job)).max() <= 1
    after = json.loads(call(f"{url}/v1/stats")[2])["models"]["mnist"]["render"]
    assert after["items"] - before["items"] == len(jobs)
    assert after["batches"] - before["batches"] < len(jobs)  # some ran together
    assert after["largest"] > 1


def test_a_batch_error_goes_to_its_own_item():
    def run(items):
        if "bad" in items:
            raise InputError("bad item")
        return [x.upper() for x in items]

    batcher = Batcher(run, "test", max_batch=8, max_wait_s=0.05)
    try:
        with batcher.arriving():  # the worker waits for the items announced as arriving
            futures = [batcher.submit(x) for x in ("a", "bad", "c", "d")]
        assert [f.exception() is not None for f in futures] == [False, True, False, False]
        assert [futures[k].result() for k in (0, 2, 3)] == ["A", "C", "D"]
        assert str(futures[1].exception()) == "bad item"
        assert batcher.stats()["sizes"] == {"4": 1}
        cancelled = Future()
        assert cancelled.cancel()
        assert batcher.submit("e").result(timeout=5) == "E"
    finally:
        batcher.close()


def test_requests_beyond_the_limit_in_flight_are_503(mnist):
    app = create_app([mnist], limits=Limits(max_in_flight=1))
    with running(app) as base:
        results = [None] * 8
        start = threading.Barrier(len(results))

        def client(k):
            start.wait()
            results[k] = call(f"{base}/v1/render", case(1))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r[0] for r in results)
        assert 200 in statuses and 503 in statuses and set(statuses) == {200, 503}
        busy = next(r for r in results if r[0] == 503)
        assert busy[1]["retry-after"] == "1"
        assert error(503, busy[2])[1] == "busy: 1 requests in flight; expected at most 1 at once, retry shortly"
        assert json.loads(call(f"{base}/v1/stats")[2])["refused_busy"] == statuses.count(503)


# The cache of encodings.
def test_cache_drops_the_least_recently_used_and_the_unused():
    now = [0.0]
    cache = EncodingCache(max_entries=2, max_age_s=10, clock=lambda: now[0])
    e = Encoding("character", np.zeros((1, 4)), 1, True)
    a, b = cache.put("m", e), cache.put("m", e)
    cache.get(a, "character", "m")  # a is used: b is now the least recently used
    c = cache.put("m", e)
    with pytest.raises(UnknownIdError):
        cache.get(b, "character", "m")
    assert cache.get(a, "character", "m") is e and cache.get(c, "character", "m") is e
    now[0] = 9.0
    cache.get(c, "character", "m")
    now[0] = 12.0  # a unused for 12 s, c for 3 s
    with pytest.raises(UnknownIdError):
        cache.get(a, "character", "m")
    assert cache.get(c, "character", "m") is e
    assert cache.stats() == {"entries": 1, "max_entries": 2, "bytes": 32, "max_bytes": 256 << 20,
                             "max_age_s": 10.0, "evicted": 1, "expired": 1}
    assert len({cache.put("m", e) for _ in range(100)}) == 100


def test_cache_drops_entries_to_stay_within_its_bytes():
    cache = EncodingCache(max_entries=100, max_bytes=1000)
    motion = lambda n: Encoding("motion", (np.zeros((n, 2, 3), np.float32), np.zeros((n, 2), np.float32)), n, False)  # noqa: E731
    ids = [cache.put("m", motion(10)) for _ in range(4)]  # 320 bytes each: the first goes
    with pytest.raises(UnknownIdError):
        cache.get(ids[0], "motion", "m")
    assert cache.stats()["bytes"] == 960 and len(cache) == 3
    with pytest.raises(InputError, match="motion encoding of 1,280 bytes; expected at most 1,000"):
        cache.put("m", motion(40))


def test_server_cache_drops_entries_by_count_and_by_age(mnist):
    app = create_app([mnist], limits=Limits(cache_entries=2, cache_max_age_s=1.0))
    files = case(1)
    with running(app) as base:
        encode = lambda kind: json.loads(call(f"{base}/v1/encode/{kind}", {"image": files["char"]})[2])["id"]  # noqa: E731
        first, second = encode("character"), encode("character")
        bg = encode("background")  # a third entry: the least recently used, `first`, goes
        compose = lambda char: error(*call(f"{base}/v1/compose", json_body={  # noqa: E731
            "character": char, "motion": "x", "background": bg})[::2])
        status, message = compose(first)
        assert status == 404 and message.startswith(f"character id {first!r}: no such encoding")
        assert compose(second) == (404, "motion id 'x': no such encoding (unknown, or dropped after 1 s "
                                        "unused or for space); expected an id from POST /v1/encode/motion")
        time.sleep(1.2)
        status, message = compose(second)
        assert status == 404 and message.startswith(f"character id {second!r}: no such encoding")
        stats = json.loads(call(f"{base}/v1/stats")[2])["cache"]
        assert (stats["entries"], stats["evicted"], stats["expired"]) == (0, 1, 2)


# Packaging and the command line.
def test_import_eqsdk_does_not_import_fastapi():
    code = ("import sys, eqsdk, eqsdk.cli\n"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'python_multipart') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_without_the_extra_exits_2_with_the_install_hint():
    code = ("import sys\nsys.modules['fastapi'] = None\n"
            "from eqsdk.cli import main\nsys.exit(main(['serve', '--port', '0']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        'eqsdk: error: eqsdk serve needs FastAPI, uvicorn and python-multipart (fastapi is missing): '
        'pip install "eqsdk[serve]"')


def test_eqsdk_serve_command_serves_until_interrupted():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "eqsdk", "serve", "--port", "0", "--no-access-log"],
                         stderr=subprocess.PIPE, text=True, env=env, preexec_fn=interruptible)
    try:
        line = p.stderr.readline()
        assert line.startswith("eqsdk serve: http://127.0.0.1:") and "models mnist" in line, line
        base = line.split()[2]
        for _ in range(200):  # the socket listens from the first line; the app starts after it
            try:
                if call(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        status, _, body = call(f"{base}/v1/render", case(3))
        assert status == 200 and image(body).shape == (64, 64, 3)
    finally:
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=30)[1]
    assert p.returncode == 130 and "eqsdk: interrupted" in rest


def test_serve_refuses_a_port_in_use():
    with running(create_app([eqsdk.load("mnist")])) as base:
        port = base.rsplit(":", 1)[1]
        out = subprocess.run([sys.executable, "-m", "eqsdk", "serve", "--port", port],
                             capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith(f"eqsdk: error: cannot listen on 127.0.0.1:{port} (Address already in use)")
