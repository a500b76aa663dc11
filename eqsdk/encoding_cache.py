"""The encodings a server hands out ids for (eqsdk serve): bounded, least recently used first out.

An id is 128 random bits (secrets.token_urlsafe), not a counter or a hash of the image, so one
client cannot guess or probe another's encodings. An entry goes when `max_entries` newer ones
have been used since it was, when the entries' arrays pass `max_bytes` together (a saved motion
of 30,000 frames takes about 1 MB, a 64x64 model's character 64 KB), or when it has gone unused
for `max_age_s`.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from eqsdk.errors import InputError
from eqsdk.renderer import Encoding


class UnknownIdError(InputError):
    """No encoding has this id: never handed out, dropped for space, or expired."""


@dataclass
class Entry:
    model: str
    encoding: Encoding
    nbytes: int
    used: float  # the clock's time of the last put or get


def nbytes(encoding: Encoding) -> int:
    """The bytes of an encoding's arrays (host arrays, or device tensors with an nbytes)."""
    data = encoding.data if isinstance(encoding.data, tuple) else (encoding.data,)
    return sum(int(getattr(a, "nbytes", 0)) for a in data)


class EncodingCache:
    """id -> (model name, Encoding); thread-safe."""

    def __init__(self, max_entries: int = 1024, max_age_s: float = 1800.0, max_bytes: int = 256 << 20,
                 clock: Callable[[], float] = time.monotonic):
        if max_entries < 1 or max_age_s <= 0 or max_bytes < 1:
            raise InputError(f"cache: {max_entries} entries, {max_age_s} s, {max_bytes} bytes; expected "
                             "at least 1 entry, a positive age and a positive size")
        self.max_entries, self.max_age_s, self.clock = int(max_entries), float(max_age_s), clock
        self.max_bytes, self.nbytes = int(max_bytes), 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self.evicted = 0  # dropped for space
        self.expired = 0  # dropped for age

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._entries)

    def put(self, model: str, encoding: Encoding) -> str:
        """Store an encoding made by `model`; returns its new id. The least recently used
        entries go to make room."""
        key = secrets.token_urlsafe(16)
        with self._lock:
            now = self.clock()
            self._expire(now)
            entry = Entry(model, encoding, nbytes(encoding), now)
            if entry.nbytes > self.max_bytes:
                raise InputError(f"{encoding.kind} encoding of {entry.nbytes:,} bytes; expected at most "
                                 f"{self.max_bytes:,} (the server's cache size)")
            self._entries[key] = entry
            self.nbytes += entry.nbytes
            while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
                self.nbytes -= self._entries.popitem(last=False)[1].nbytes
                self.evicted += 1
        return key

    def get(self, key: str, kind: str, model: str) -> Encoding:
        """The `kind` encoding ("character", "background" or "motion") of id `key`, made by
        `model`: UnknownIdError when there is none, InputError when it is of another kind or
        model."""
        with self._lock:
            self._expire(self.clock())
            entry = self._entries.get(key) if isinstance(key, str) else None
            if entry is None:
                raise UnknownIdError(f"{kind} id {short(key)}: no such encoding (unknown, or dropped "
                                     f"after {self.max_age_s:g} s unused or for space); expected an id "
                                     f"from POST /v1/encode/{kind}")
            if entry.encoding.kind != kind:
                raise InputError(f"{kind} id {short(key)} is a {entry.encoding.kind} encoding; "
                                 f"expected an id from POST /v1/encode/{kind}")
            if entry.model != model:
                raise InputError(f"{kind} id {short(key)} was encoded by model {entry.model!r}; this "
                                 f"request uses model {model!r}: pass model={entry.model} or encode "
                                 f"with {model!r}")
            entry.used = self.clock()
            self._entries.move_to_end(key)
            return entry.encoding

    def stats(self) -> dict:
        with self._lock:
            self._expire(self.clock())
            return {"entries": len(self._entries), "max_entries": self.max_entries, "bytes": self.nbytes,
                    "max_bytes": self.max_bytes, "max_age_s": self.max_age_s, "evicted": self.evicted,
                    "expired": self.expired}

    def _expire(self, now: float) -> None:
        """Drop the entries unused for max_age_s: the least recently used come first."""
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if now - entry.used < self.max_age_s:
                return
            del self._entries[key]
            self.nbytes -= entry.nbytes
            self.expired += 1


def short(key) -> str:
    """An id for a message, cut to a readable length."""
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."
