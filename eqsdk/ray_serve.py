"""eqsdk on Ray Serve (the `ray` extra): the routes of eqsdk serve on replicas of a Ray Serve
deployment, for a cluster of machines.

    serve run eqsdk.ray_serve:app models=mnist,sprites num_replicas=2 max_batch=32 max_wait_ms=5
    serve deploy examples/ray_serve.yaml

Each replica builds the same FastAPI app as `eqsdk serve` (eqsdk.server.create_app: the same
routes, checks, errors and limits) and swaps two of its parts:
- batching: every batched call of the app (render, compose, each kind of encoding, for each
  model) goes through one `@serve.batch` method of the replica, which groups the batch by call
  and runs each group as one `render_arrays` (or `compose_arrays`, `f_c`, `f_b`, T^Z) call on a
  worker thread, off the replica's event loop;
- encodings: ids live in one EncodingStore actor per application, not in a replica, so an id
  handed out by one replica composes on any other (Ray's proxy spreads requests over replicas;
  it does not route by id). The store is created by the first replica to start and shares
  that replica's fate: if it goes (the replica stopped, scaled down or redeployed), the next
  call makes a new, empty one, and a client gets 404 for its old ids and encodes again, as after
  the cache's own expiry. Encodings cross as host arrays (a 64x64 model's character: 64 KB),
  one blocking actor call per put or get.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any

from eqsdk.bundle import DEFAULT_MODEL
from eqsdk.encoding_cache import EncodingCache
from eqsdk.errors import BackendError, EqsdkError, InputError
from eqsdk.renderer import BATCH, Encoding

try:
    import ray
    from ray import serve
except ModuleNotFoundError as e:
    raise BackendError(f"eqsdk on Ray Serve needs ray[serve] ({e.name} is missing): "
                       'pip install "eqsdk[ray]"') from None

from eqsdk.server import Limits, Service, create_app  # noqa: E402 - after ray's install hint

STORE = "eqsdk-encodings"  # the store actor's name, followed by the application's
NAMESPACE = "eqsdk"  # the store's Ray namespace, whichever job created the replicas


@ray.remote(num_cpus=0)
class EncodingStore:
    """The encodings of all the replicas of one application: an EncodingCache (bounded, least
    recently used first out, ids of 128 random bits) in one actor. Errors are returned, not
    raised, so that a replica raises the EqsdkError itself rather than Ray's wrapper of it."""

    def __init__(self, max_entries: int, max_age_s: float, max_bytes: int):
        self.cache = EncodingCache(max_entries, max_age_s, max_bytes)

    def put(self, model: str, encoding: Encoding):
        try:
            return self.cache.put(model, encoding)
        except EqsdkError as e:
            return e

    def get(self, key: str, kind: str, model: str):
        try:
            return self.cache.get(key, kind, model)
        except EqsdkError as e:
            return e

    def stats(self) -> dict:
        return self.cache.stats()


class SharedEncodings:
    """EncodingCache's interface (put, get, stats), as the routes use it, over the application's
    EncodingStore. Features leave a replica as host arrays and come back on its backend's device."""

    def __init__(self, name: str, limits: Limits, service: Service):
        self.name, self.limits, self.service = name, limits, service
        self.store = self._connect()

    def _connect(self):
        return EncodingStore.options(name=self.name, namespace=NAMESPACE, get_if_exists=True).remote(
            self.limits.cache_entries, self.limits.cache_max_age_s, self.limits.cache_bytes)

    def _call(self, method: str, *args):
        """One call to the store (blocking: the routes call the cache synchronously); a store that
        has gone is replaced by a new, empty one and the call made again."""
        try:
            out = ray.get(getattr(self.store, method).remote(*args))
        except ray.exceptions.RayActorError:
            self.store = self._connect()
            out = ray.get(getattr(self.store, method).remote(*args))
        if isinstance(out, EqsdkError):
            raise out
        return out

    def put(self, model: str, encoding: Encoding) -> str:
        b = self.service.models[model].renderer.backend
        data = encoding.data if encoding.kind == "motion" else b.download(encoding.data)  # motion: host
        return self._call("put", model, Encoding(encoding.kind, data, encoding.count, encoding.single))

    def get(self, key: str, kind: str, model: str) -> Encoding:
        e = self._call("get", key, kind, model)
        if e.kind == "motion":
            return e
        return Encoding(e.kind, self.service.models[model].renderer.backend.upload(e.data), e.count, e.single)

    def stats(self) -> dict:
        return {**self._call("stats"), "store": self.name}


class ServeBatched:
    """eqsdk.batcher.Batcher's interface, as the routes use it (submit, arriving, stats, close),
    over the replica's @serve.batch method: `run` (one model's operation: items -> results) runs
    on the items of a Ray batch that are its own, as one call."""

    def __init__(self, run, name: str, replica: "EqsdkServe"):
        self.run, self.name, self.replica = run, name, replica
        self.sizes: Counter = Counter()  # group size -> calls of `run`
        self.busy_s = 0.0

    def submit(self, item) -> asyncio.Future:
        """Queue one item (on the replica's event loop); the future gets its result or error."""
        return asyncio.ensure_future(self._one(item))

    async def _one(self, item):
        ok, value = await self.replica.batched((self, item))
        if not ok:
            raise value
        return value

    def arriving(self):
        return nullcontext()  # @serve.batch waits batch_wait_timeout_s instead

    def run_group(self, items: list) -> list[tuple[bool, Any]]:
        """(ok, result or error) per item; when the batch fails, each item runs alone, so an
        error reaches the request that caused it and no other."""
        try:
            return [(True, r) for r in self.run(items)]
        except Exception as e:  # noqa: BLE001 - handed to the requests, which report it
            if len(items) == 1:
                return [(False, e)]
            out = []
            for item in items:
                try:
                    out.append((True, self.run([item])[0]))
                except Exception as e1:  # noqa: BLE001
                    out.append((False, e1))
            return out

    def stats(self) -> dict:
        sizes = dict(sorted(self.sizes.items()))
        return {"batches": sum(sizes.values()), "items": sum(k * n for k, n in sizes.items()),
                "largest": max(sizes, default=0), "sizes": {str(k): n for k, n in sizes.items()},
                "busy_s": round(self.busy_s, 3)}

    def close(self) -> None:
        pass


@serve.deployment(name="eqsdk", max_ongoing_requests=Limits.max_in_flight)
@serve.ingress()
class EqsdkServe:
    """One replica: the models loaded, the app of eqsdk serve built on them, its batched calls
    made through `batched` and its encodings kept in the application's EncodingStore."""

    def __init__(self, models: list, backend: str, limits: Limits, max_batch: int, max_wait_ms: float):
        self.eqsdk_app = create_app(models, backend, limits, max_batch, max_wait_ms)
        self.service = service = self.eqsdk_app.state.service
        self.batched.set_max_batch_size(max_batch)
        self.batched.set_batch_wait_timeout_s(max_wait_ms / 1000)
        for served in service.models.values():
            served.close()  # the app's own batcher threads: replaced by @serve.batch
            served.render = ServeBatched(served.render.run, served.render.name, self)
            served.compose = ServeBatched(served.compose.run, served.compose.name, self)
            served.encode = {k: ServeBatched(b.run, b.name, self) for k, b in served.encode.items()}
        context = serve.get_replica_context()
        service.cache = SharedEncodings(f"{STORE}-{context.app_name}", limits, service)
        service_stats = service.stats
        service.stats = lambda: {**service_stats(), "replica": context.replica_tag}  # /v1/stats

    def __serve_build_asgi_app__(self):
        return self.eqsdk_app

    @serve.batch(max_batch_size=BATCH, batch_wait_timeout_s=0.002)
    async def batched(self, jobs: list[tuple[ServeBatched, Any]]) -> list[tuple[bool, Any]]:
        """One Ray batch of (operation, item) -> (ok, result or error) each, in order: the items of
        each operation run as one call, on a worker thread."""
        return await asyncio.to_thread(run_jobs, jobs)


def run_jobs(jobs: list[tuple[ServeBatched, Any]]) -> list[tuple[bool, Any]]:
    """A Ray batch's items grouped by operation (one model's render, compose, ...), each group
    run as one call; results back in the batch's order."""
    groups: dict[ServeBatched, list[int]] = {}
    for k, (op, _) in enumerate(jobs):
        groups.setdefault(op, []).append(k)
    out: list = [None] * len(jobs)
    for op, index in groups.items():
        t0 = time.perf_counter()
        for k, result in zip(index, op.run_group([jobs[k][1] for k in index])):
            out[k] = result
        op.busy_s += time.perf_counter() - t0
        op.sizes[len(index)] += 1
    return out


# Building the application: from Python, from `serve run eqsdk.ray_serve:app key=value ...`, or
# from a `serve deploy` config's `args`.
def build(models=(DEFAULT_MODEL,), backend: str = "cpu", num_replicas: int = 1,
          num_cpus: float = 1.0, max_batch: int = BATCH, max_wait_ms: float = 2.0,
          limits: Limits | None = None) -> "serve.Application":
    """The Ray Serve application: `num_replicas` replicas of `num_cpus` CPUs each serving `models`
    (bundled names or bundle paths, present on every node; the first is the default) on
    `backend`, each batching up to `max_batch` items, waiting up to `max_wait_ms` for a batch to
    fill. `limits` as for eqsdk serve, per replica (the encodings cache: per application)."""
    limits = limits or Limits()
    if isinstance(models, (str, Path)):
        models = [models]
    models = [str(m) for m in models]
    if not models:
        raise InputError("models: got none; expected at least one model name or bundle path")
    for name, value, low, high in (("num_replicas", num_replicas, 1, 4096),
                                   ("max_batch", max_batch, 1, 1024)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(f"{name}: got {value!r}; expected an integer from {low} to {high}")
    for name, value, high in (("num_cpus", num_cpus, 1024), ("max_wait_ms", max_wait_ms, 1000)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
            raise InputError(f"{name}: got {value!r}; expected a number from 0 to {high}")
    return EqsdkServe.options(
        num_replicas=num_replicas, max_ongoing_requests=limits.max_in_flight,
        ray_actor_options={"num_cpus": num_cpus}).bind(models, backend, limits, max_batch, max_wait_ms)


BUILD_ARGS = {"models": str, "backend": str, "num_replicas": int, "num_cpus": float, "max_batch": int,
              "max_wait_ms": float}
LIMIT_ARGS = {f.name: type(f.default) for f in fields(Limits)}


def app(args: dict | None = None) -> "serve.Application":
    """The application builder of `serve run eqsdk.ray_serve:app` and of `serve deploy`'s
    `import_path`: args (text from the command line, or typed from a config file) are build()'s
    arguments and Limits' fields; `models` is a list or comma-separated text."""
    args = dict(args or {})
    unknown = sorted(set(args) - set(BUILD_ARGS) - set(LIMIT_ARGS))
    if unknown:
        raise InputError(f"eqsdk.ray_serve:app: unknown argument {', '.join(map(repr, unknown))}; expected "
                         f"some of {', '.join(BUILD_ARGS)}, {', '.join(LIMIT_ARGS)}")
    kwargs = {k: typed(k, v, {**BUILD_ARGS, **LIMIT_ARGS}[k]) for k, v in args.items() if k != "models"}
    if "models" in args:
        models = args["models"]
        if isinstance(models, str):
            models = [m.strip() for m in models.split(",") if m.strip()]
        if not isinstance(models, list):
            raise InputError(f"eqsdk.ray_serve:app: models={models!r}; expected a list of model names "
                             "or bundle paths, or comma-separated text")
        kwargs["models"] = models
    limits = Limits(**{k: kwargs.pop(k) for k in list(kwargs) if k in LIMIT_ARGS})
    return build(**kwargs, limits=limits)


def typed(name: str, value, kind: type):
    """An argument as `kind`: text from the command line is converted, a config's value checked."""
    if not isinstance(value, bool) and (isinstance(value, kind) or kind is float and isinstance(value, int)):
        return value
    if isinstance(value, str) and kind is not str:
        try:
            return kind(value)
        except ValueError:
            pass
    expected = {int: "an integer", float: "a number", str: "text"}[kind]
    raise InputError(f"eqsdk.ray_serve:app: {name}={value!r}; expected {expected}")
