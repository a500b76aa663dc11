"""Load on `eqsdk serve` over loopback: N concurrent clients against the library's own rates.

    python -m benchmarks.serve_load [--clients 1,4,16,64] [--seconds 5] [--model mnist]
        [--max-batch 32] [--max-wait-ms 2] [--out benchmarks/results/serve_load.md]

Starts `eqsdk serve` in its own process (port 0, no access log) and, for each N, runs N client
threads in this process, each on its own keep-alive connection, posting for `seconds` after one
second of warm-up: /v1/render (four 64x64 PNG uploads, distinct per client) and /v1/compose
(JSON ids of encodings made once). Reports per N: completed requests/s, median and p99 latency,
errors (any status but 200, or a failed connection), the mean batch the server formed (its
/v1/stats before and after), and the server's peak resident memory (VmHWM) at the end. Beside
them, in the same run while the server idles: the library's render_arrays and compose_arrays at
batch 1 on one thread and at batch 32 (graphs only: no decoding or PNG), median of timed calls.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

import eqsdk
from eqsdk.images import to_array
from eqsdk.renderer import Encoding

FIELDS = ("char", "bg", "anim_start", "anim_end")
BOUNDARY = "eqsdk-load-boundary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def multipart(rng: np.random.Generator, size: int, fields=FIELDS) -> bytes:
    """A multipart body of a random size x size PNG image per field."""
    parts = [f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{f}\"; filename=\"{f}.png\"\r\n"
             f"Content-Type: image/png\r\n\r\n".encode()
             + png_bytes(rng.integers(0, 256, (size, size, 3), np.uint8)) + b"\r\n" for f in fields]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


# The server.
def start_server(model: str, max_batch: int, max_wait_ms: float, max_in_flight: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "eqsdk", "serve", "--model", model, "--port", "0", "--no-access-log",
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-in-flight", str(max_in_flight)]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    if not line.startswith("eqsdk serve: http://"):
        p.kill()
        raise SystemExit(f"eqsdk serve did not start: {line}{p.stderr.read()}")
    threading.Thread(target=p.stderr.read, daemon=True).start()  # drain its log
    base = line.split()[2]
    for _ in range(600):
        try:
            if request(base, "GET", "/healthz")[0] == 200:
                return p, base
        except OSError:
            time.sleep(0.05)
    raise SystemExit("eqsdk serve did not answer /healthz")


def request(base: str, method: str, path: str, body: bytes | None = None, kind: str | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    u = urlsplit(base)
    c = conn or http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request(method, path, body, {"Content-Type": kind} if kind else {})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data


def stats(base: str, model: str, what: str) -> dict:
    """The server's counters of one batcher of `model` (its manifest name)."""
    return json.loads(request(base, "GET", "/v1/stats")[1])["models"][model][what]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(base: str, model: str, clients: int, seconds: float, path: str, bodies: list[bytes], kind: str) -> dict:
    """`clients` threads posting bodies[k % len] for `seconds` after 1 s of warm-up."""
    u = urlsplit(base)
    start, stop, warm = threading.Barrier(clients + 1), threading.Event(), threading.Event()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        body = bodies[k % len(bodies)]
        start.wait()
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                status, _ = request(base, "POST", path, body, kind, conn)
            except OSError:
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            if warm.is_set():
                latencies[k].append(time.perf_counter() - t0)
                errors[k] += status != 200
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    time.sleep(1.0)
    what = "render" if path == "/v1/render" else "compose"
    before = stats(base, model, what)
    warm.set()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - t0
    for t in threads:
        t.join()
    after = stats(base, model, what)
    lat = np.array([x for per in latencies for x in per]) * 1000
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "requests_s": len(lat) / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": sum(errors), "requests": len(lat),
            "mean_batch": (after["items"] - before["items"]) / max(1, batches),
            "largest_batch": after["largest"]}


# The library, in this process.
def library_rates(model: str, seconds: float) -> dict[str, float]:
    """Items/s of render_arrays and compose_arrays at batch 1 and 32, from the median of timed
    calls (one thread, graphs only)."""
    r = eqsdk.load(model)
    rng = np.random.default_rng(0)
    s = r.image_size
    x = [np.stack([to_array(rng.integers(0, 256, (s, s, 3), np.uint8), s) for _ in range(32)]) for _ in FIELDS]
    character = r.encode_character(list(x[0].transpose(0, 2, 3, 1)))
    background = r.encode_background(list(x[3].transpose(0, 2, 3, 1)))
    theta, origin = r.motion_arrays(x[1], x[2])
    out = {}
    for batch in (1, 32):
        rows = lambda e: Encoding(e.kind, e.data[:batch], batch, False)  # noqa: E731
        motion = Encoding("motion", (theta[:batch], origin[:batch]), batch, False)
        calls = {"render": lambda: r.render_arrays(*(a[:batch] for a in x)),
                 "compose": lambda: r.compose_arrays(rows(character), motion, rows(background), batch)}
        for what, call in calls.items():
            for _ in range(3):
                call()
            times, t_end = [], time.perf_counter() + seconds
            while time.perf_counter() < t_end or len(times) < 10:
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            out[f"{what}_b{batch}"] = batch / float(np.median(times))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--model", default="mnist")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument("--out", default="benchmarks/results/serve_load.md")
    args = ap.parse_args(argv)
    levels = [int(n) for n in args.clients.split(",")]
    load_before = os.getloadavg()
    server, base = start_server(args.model, args.max_batch, args.max_wait_ms, max_in_flight=max(levels) * 2)
    try:
        served = json.loads(request(base, "GET", "/v1/models")[1])["models"][0]
        name, size = served["name"], served["image_size"]
        library = library_rates(args.model, seconds=2.0)
        print("library:", {k: round(v, 1) for k, v in library.items()}, file=sys.stderr)
        rng = np.random.default_rng(1)
        bodies = [multipart(rng, size) for _ in range(max(levels))]
        ids = {kind: json.loads(request(base, "POST", f"/v1/encode/{kind}", multipart(rng, size, fields),
                                        FORM)[1])["id"]
               for kind, fields in (("character", ["image"]), ("background", ["image"]),
                                    ("motion", ["anim_start", "anim_end"]))}
        rows = []
        for path, payload, kind in (("/v1/render", bodies, FORM),
                                    ("/v1/compose", [json.dumps(ids).encode()], "application/json")):
            for n in levels:
                row = load(base, name, n, args.seconds, path, payload, kind)
                row["route"] = path
                rows.append(row)
                print(f"{path} {n:3d} clients: {row['requests_s']:7.1f}/s p50 {row['p50_ms']:6.1f} ms "
                      f"p99 {row['p99_ms']:6.1f} ms errors {row['errors']} mean batch {row['mean_batch']:.1f}",
                      file=sys.stderr)
        rss = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    write(Path(args.out), args, rows, library, rss, load_before, os.getloadavg())
    print(f"wrote {args.out}", file=sys.stderr)


def reading(rows: list[dict], library: dict) -> list[str]:
    """What the table says against the library's rates, per route at the most clients."""
    out = []
    for route, what in (("/v1/render", "render"), ("/v1/compose", "compose")):
        top = max((r for r in rows if r["route"] == route), key=lambda r: r["clients"], default=None)
        if top is None:
            continue
        b1, b32 = library[f"{what}_b1"], library[f"{what}_b32"]
        out.append(f"- {route} at {top['clients']} clients: {top['requests_s']:.1f}/s, {top['requests_s'] / b32:.2f} x "
                   f"the library's batch-32 rate and {top['requests_s'] / b1:.2f} x its batch-1 rate, in batches of "
                   f"{top['mean_batch']:.1f} on average; the library ran batch 32 at {b32 / b1:.2f} x the per-item "
                   "rate of batch 1 here.")
    if any(library[f"{w}_b32"] < 0.9 * library[f"{w}_b1"] for w in ("render", "compose")):
        out.append("- On these busy cores a batch ran slower per item than single calls, so the batches formed "
                   "under load do not raise the server's rate here, and rates move between runs with the other "
                   "processes' load; `--max-batch` sets the batch size. On quiet cores (docs/benchmarks.md) "
                   "batch 32 runs at least as fast per item as batch 1.")
    return out


def write(path: Path, args, rows: list[dict], library: dict, rss: float, before, after) -> None:
    import onnxruntime

    lines = [
        "# eqsdk serve under load",
        "",
        f"`python -m benchmarks.serve_load --clients {args.clients} --seconds {args.seconds:g} --model {args.model} "
        f"--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, onnxruntime "
        f"{onnxruntime.__version__}; the server and the clients on the same cores, over loopback. Load average "
        f"{before[0]:.1f} before, {after[0]:.1f} after: both cores were busy with two training runs "
        "(python -m train.train) while it ran, so the figures are indicative; rerun it on quiet cores.",
        "",
        f"Each level: N client threads on keep-alive connections, {args.seconds:g} s after 1 s of warm-up. "
        "Latency: request sent to response read, at the client. Errors: any status but 200. Mean batch: items "
        "per batched call the server ran at that level (its /v1/stats).",
        "",
        "| route | clients | requests/s | p50 ms | p99 ms | errors | mean batch | largest batch so far |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['route']} | {r['clients']} | {r['requests_s']:.1f} | {r['p50_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['errors']} of {r['requests']} | {r['mean_batch']:.1f} | "
                     f"{r['largest_batch']} |")
    lines += ["", *reading(rows, library), "",
        f"Server peak resident memory (VmHWM) after all levels: {rss:.0f} MB.",
        "",
        "The library in the same run, one thread, graphs only (no decoding, no PNG), median of timed calls:",
        "",
        "| call | batch 1, items/s | batch 32, items/s |",
        "|---|---:|---:|",
        f"| render_arrays | {library['render_b1']:.1f} | {library['render_b32']:.1f} |",
        f"| compose_arrays | {library['compose_b1']:.1f} | {library['compose_b32']:.1f} |",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
