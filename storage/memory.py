"""An in-memory storage for fast tests, with the same semantics as the real
backends: nothing is visible before commit, aborts leave nothing, and an
optional capacity simulates a full disk (StorageFull) for pipeline tests.

Thread-safe, because pipeline stages may write from worker threads."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from engine.errors import ObjectNotFound, StorageError, StorageFull
from storage.base import ObjectInfo, WriterLifecycle
from storage.keys import is_partial_of, partial_key, validate_key, validate_prefix


@dataclass(frozen=True)
class _Stored:
    data: bytes
    modified: datetime


@dataclass
class _Partial:
    buffer: bytearray = field(default_factory=bytearray)
    touched: float = field(default_factory=time.time)  # last write, as a file's mtime


class MemoryStorage:
    def __init__(self, name: str = "memory", capacity_bytes: int | None = None) -> None:
        if capacity_bytes is not None and capacity_bytes < 0:
            raise ValueError("capacity_bytes must not be negative")
        self.name = name
        self.capacity_bytes = capacity_bytes
        self._objects: dict[str, _Stored] = {}
        # In-flight writers by temp name: what sweep_partials sees of them.
        self._partials: dict[str, _Partial] = {}
        # Committed plus in-flight bytes, as a disk counts them: an overwrite
        # needs room for both versions until it commits.
        self._used = 0
        self._lock = threading.Lock()

    def open_writer(self, key: str) -> MemoryWriter:
        validate_key(key)
        temp = partial_key(key)
        partial = _Partial()
        with self._lock:
            self._partials[temp] = partial
        return MemoryWriter(self, key, temp, partial)

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self._get(key).data)

    def stat(self, key: str) -> ObjectInfo:
        stored = self._get(key)
        return ObjectInfo(key=key, size=len(stored.data), modified=stored.modified)

    def exists(self, key: str) -> bool:
        validate_key(key)
        with self._lock:
            return key in self._objects

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            stored = self._objects.pop(key, None)
            if stored is None:
                raise self._not_found(key)
            self._used -= len(stored.data)

    def sweep_partials(self, older_than_seconds: float) -> list[str]:
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must not be negative")
        cutoff = time.time() - older_than_seconds
        removed: list[str] = []
        with self._lock:
            for temp, partial in list(self._partials.items()):
                if partial.touched <= cutoff:
                    del self._partials[temp]
                    self._used -= len(partial.buffer)
                    removed.append(temp)
        return sorted(removed)

    def discard_partials(self, key: str) -> list[str]:
        validate_key(key)
        removed: list[str] = []
        with self._lock:
            for temp, partial in list(self._partials.items()):
                if is_partial_of(temp, key):
                    del self._partials[temp]
                    self._used -= len(partial.buffer)
                    removed.append(temp)
        return sorted(removed)

    def free_bytes(self) -> int | None:
        if self.capacity_bytes is None:
            return None
        with self._lock:
            return max(self.capacity_bytes - self._used, 0)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        with self._lock:
            items = [(k, v) for k, v in self._objects.items() if k.startswith(prefix)]
        items.sort(key=lambda item: item[0])
        return iter(ObjectInfo(key=k, size=len(v.data), modified=v.modified) for k, v in items)

    # -- used by MemoryWriter ----------------------------------------------

    def append(self, key: str, temp: str, partial: _Partial, data: bytes) -> int:
        """Add data to an in-flight object, or raise StorageFull (dropping it)."""
        size = memoryview(data).nbytes
        with self._lock:
            registered = self._partials.get(temp) is partial
            capacity = self.capacity_bytes
            if registered and capacity is not None and self._used + size > capacity:
                self._drop(temp)
                raise StorageFull(
                    f"storage {self.name!r} (memory, {capacity} bytes) is full: "
                    f"writing {key}: no space left"
                )
            # Copy now: the caller may reuse its buffer after write() returns.
            partial.buffer.extend(data)
            partial.touched = time.time()
            if registered:
                self._used += size
        return size

    def publish(self, key: str, temp: str, partial: _Partial) -> ObjectInfo:
        """Make an in-flight object visible under key, replacing any old one."""
        with self._lock:
            if self._partials.get(temp) is not partial:
                raise StorageError(
                    f"storage {self.name!r}: the partial object of {key} disappeared before "
                    "commit (removed by sweep_partials?)"
                )
            del self._partials[temp]
            old = self._objects.get(key)
            if old is not None:
                self._used -= len(old.data)
            stored = _Stored(data=bytes(partial.buffer), modified=datetime.now(UTC))
            self._objects[key] = stored
        return ObjectInfo(key=key, size=len(stored.data), modified=stored.modified)

    def discard(self, temp: str) -> None:
        with self._lock:
            self._drop(temp)

    def _drop(self, temp: str) -> None:
        partial = self._partials.pop(temp, None)
        if partial is not None:
            self._used -= len(partial.buffer)

    def _get(self, key: str) -> _Stored:
        validate_key(key)
        with self._lock:
            stored = self._objects.get(key)
        if stored is None:
            raise self._not_found(key)
        return stored

    def _not_found(self, key: str) -> ObjectNotFound:
        return ObjectNotFound(f"no object {key!r} in storage {self.name!r}")


class MemoryWriter(WriterLifecycle):
    """An AtomicWriter for MemoryStorage; see storage.base.AtomicWriter."""

    def __init__(self, storage: MemoryStorage, key: str, temp: str, partial: _Partial) -> None:
        self._storage = storage
        self._key = key
        self._temp = temp
        self._partial = partial
        self._state = "open"  # -> "committed" | "aborted"
        self._info: ObjectInfo | None = None

    def write(self, data: bytes) -> int:
        self._require_open()
        try:
            return self._storage.append(self._key, self._temp, self._partial, data)
        except StorageFull:
            self._state = "aborted"  # append already dropped the partial object
            raise

    def commit(self) -> ObjectInfo:
        if self._info is not None:
            return self._info  # committing twice (e.g. commit() inside `with`) is fine
        self._require_open()
        try:
            self._info = self._storage.publish(self._key, self._temp, self._partial)
        except StorageError:
            self.abort()
            raise
        self._state = "committed"
        return self._info

    def abort(self) -> None:
        """Drop the partial object. Does nothing after commit() or a previous abort()."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._storage.discard(self._temp)
