"""The storage interface: where archives live.

Small on purpose (as in restic): a backend writes a stream atomically, opens,
stats, lists and deletes objects by key. Keys look like
"<app_id>/<backup_id>.tar.zst.age" and never contain "..", a leading "/" or a
backslash. Wrappers (retry, throttling) and new backends (S3) implement the
same protocol and pass the same conformance suite (tests/storage).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, Self

# Marks an object that is still being written; never a final name. A sweep
# removes leftovers of crashed writers.
TEMP_MARKER = ".partial-"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


class AtomicWriter(Protocol):
    """A stream being written. Nothing is visible under the key until
    commit() returns; abort() (or an exception in the `with` block) leaves
    nothing behind."""

    def write(self, data: bytes) -> int: ...

    def commit(self) -> ObjectInfo: ...

    def abort(self) -> None: ...

    def __enter__(self) -> AtomicWriter: ...

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...


class WriterLifecycle:
    """What every backend's writer shares: the `with` block commits on a
    clean exit and aborts on an exception (or after an abort inside it), and
    a writer refuses use once committed or aborted. A subclass sets _key and
    _state ("open", then "committed" or "aborted") and has commit/abort."""

    _key: str
    _state: str

    def commit(self) -> ObjectInfo:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or self._state == "aborted":
            self.abort()
        else:
            self.commit()

    def _require_open(self) -> None:
        if self._state != "open":
            raise ValueError(f"writer for {self._key!r} is already {self._state}")


class Storage(Protocol):
    name: str  # the storage location's name, e.g. "local"

    def open_writer(self, key: str) -> AtomicWriter: ...

    def open(self, key: str) -> BinaryIO: ...

    def stat(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def sweep_partials(self, older_than_seconds: float) -> builtins.list[str]:
        """Remove objects left half-written by crashed writers; returns their names."""
        ...

    def discard_partials(self, key: str) -> builtins.list[str]:
        """Remove the half-written versions of KEY whatever their age: for a
        caller that knows their writer is dead (recovery after a crash)."""
        ...

    def free_bytes(self) -> int | None:
        """Free space at the destination, None where it has no meaning."""
        ...
