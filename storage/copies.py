"""One storage location made of several copies: the archive is written to
the first member (the local disk: the staging place of every backup) and
copied to the others by an upload run; it is read from the first member
that still holds it, and deleted from all of them.

This is what `local+s3` (kept locally, copied off-site) and `s3` (staged
locally, the local copy removed once the off-site one is verified) are:
the code that writes, verifies, restores, downloads or deletes a snapshot
goes through get_storage(snapshot.storage_location) and needs no idea of
where the copies are now."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, TypeVar

from engine.errors import ObjectNotFound, StorageError
from storage.base import AtomicWriter, ObjectInfo, Storage

T = TypeVar("T")


class CopiesStorage:
    def __init__(
        self,
        name: str,
        members: Sequence[Storage],
        sweep: Callable[[float], builtins.list[str]] | None = None,
    ) -> None:
        if not members:
            raise ValueError("a storage of copies needs at least one member")
        self.name = name
        self.members = list(members)
        # Each member is swept under its own name; a compound sweeps only
        # what its caller asks (nothing by default), never twice.
        self._sweep = sweep

    @property
    def primary(self) -> Storage:
        return self.members[0]

    def open_writer(self, key: str) -> AtomicWriter:
        return self.primary.open_writer(key)

    def open(self, key: str) -> BinaryIO:
        return self._first(key, lambda member: member.open(key))

    def stat(self, key: str) -> ObjectInfo:
        return self._first(key, lambda member: member.stat(key))

    def exists(self, key: str) -> bool:
        return any(member.exists(key) for member in self.members)

    def where(self, key: str) -> builtins.list[str]:
        """The names of the members holding KEY now."""
        return [member.name for member in self.members if member.exists(key)]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        seen: dict[str, ObjectInfo] = {}
        for member in self.members:
            for info in member.list(prefix):
                seen.setdefault(info.key, info)
        return iter(sorted(seen.values(), key=lambda info: info.key))

    def delete(self, key: str) -> None:
        """Delete KEY from every member. ObjectNotFound only if none had it;
        a member that fails does not stop the others (its error is raised
        after all were tried, so the caller keeps the row and can retry)."""
        found = False
        errors: builtins.list[StorageError] = []
        for member in self.members:
            try:
                member.delete(key)
                found = True
            except ObjectNotFound:
                continue
            except StorageError as exc:
                errors.append(exc)
        if errors:
            raise StorageError("; ".join(str(e) for e in errors))
        if not found:
            raise ObjectNotFound(f"no object {key!r} in storage {self.name!r}")

    def sweep_partials(self, older_than_seconds: float) -> builtins.list[str]:
        return self._sweep(older_than_seconds) if self._sweep is not None else []

    def discard_partials(self, key: str) -> builtins.list[str]:
        # Writers only ever write to the primary; uploads have their own ledger.
        return self.primary.discard_partials(key)

    def free_bytes(self) -> int | None:
        return self.primary.free_bytes()  # where a backup is written first

    def _first(self, key: str, read: Callable[[Storage], T]) -> T:
        for member in self.members:
            try:
                return read(member)
            except ObjectNotFound:
                continue
        raise ObjectNotFound(f"no object {key!r} in storage {self.name!r}")
