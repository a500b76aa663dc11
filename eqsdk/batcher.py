"""Server-side batching: items submitted one at a time, from many threads or event-loop tasks, are
grouped and run as one batched call on a worker thread (eqsdk serve).

A worker takes the first item waiting, then whatever else is queued, up to `max_batch`. While
more items are announced (`arriving`: requests still decoding their uploads) it waits for them,
at most `max_wait_s` past the first, so a lone request pays no wait and a burst forms one batch.
Each item has its own Future: results go back in order, and when a batch fails each of its items
runs alone, so an error reaches the request that caused it and no other.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

_STOP = object()


class Batcher:
    """Runs `run(items) -> results` (one result per item, in order) on batches of submitted items."""

    def __init__(self, run: Callable[[list], Sequence], name: str, max_batch: int = 32,
                 max_wait_s: float = 0.002):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch {max_batch}, max_wait_s {max_wait_s}; expected >= 1 and >= 0")
        self.run, self.name = run, name
        self.max_batch, self.max_wait_s = int(max_batch), float(max_wait_s)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._arriving = 0
        self.sizes: Counter = Counter()  # batch size -> batches run
        self.busy_s = 0.0  # time spent in run()
        self._thread = threading.Thread(target=self._work, name=f"eqsdk-batch-{name}", daemon=True)
        self._thread.start()

    def submit(self, item) -> Future:
        """Queue one item; its Future gets its result, or the exception its run raised."""
        future: Future = Future()
        self._queue.put((item, future))
        return future

    @contextmanager
    def arriving(self):
        """Around the work that precedes a submit (reading, decoding): the worker waits for it."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1

    def stats(self) -> dict:
        """Batches run, items, the largest batch and the count of each size."""
        with self._lock:
            sizes = dict(sorted(self.sizes.items()))
        return {"batches": sum(sizes.values()), "items": sum(k * n for k, n in sizes.items()),
                "largest": max(sizes, default=0), "sizes": {str(k): n for k, n in sizes.items()},
                "busy_s": round(self.busy_s, 3)}

    def close(self) -> None:
        """Stop the worker after the items queued so far."""
        self._queue.put(_STOP)
        self._thread.join()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._run(batch)
            if stop:
                return

    def _gather(self, first) -> tuple[list, bool]:
        """The first item and those queued or arriving within max_wait_s, up to max_batch."""
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not self._arriving:
                    break
                try:
                    item = self._queue.get(timeout=min(left, 0.0005))  # re-check `arriving` often
                except queue.Empty:
                    continue
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, batch: list) -> None:
        live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]  # skip cancelled
        if not live:
            return
        t0 = time.perf_counter()
        try:
            results = self.run([item for item, _ in live])
        except BaseException as e:  # noqa: BLE001 - handed to the requests, which report it
            if len(live) == 1:
                live[0][1].set_exception(e)
            else:  # which item failed? each alone, so the error goes to its own request
                for item, f in live:
                    try:
                        f.set_result(self.run([item])[0])
                    except BaseException as e1:  # noqa: BLE001
                        f.set_exception(e1)
        else:
            for (_, f), result in zip(live, results):
                f.set_result(result)
        with self._lock:
            self.busy_s += time.perf_counter() - t0
            self.sizes[len(live)] += 1
