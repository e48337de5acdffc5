"""Named storage locations configured for this deployment.

Backends: `local` (BACKUP_ROOT) and each configured S3 location (`s3` from
BACKUP_S3_*, more from BACKUP_S3_LOCATIONS). What a snapshot's
`storage_location` may be:

- `local`: the local disk only;
- `<s3 name>`: staged on the local disk, uploaded, and the local copy
  removed once the off-site copy is verified;
- `local+<s3 name>`: kept on the local disk and copied off-site.

get_storage(location) gives a Storage that writes to the local disk, reads
from whichever copy exists (local first: no network, no egress cost) and
deletes every copy, so backup, verify, restore and download need no idea of
where the copies are now. get_backend(name) gives one backend by itself."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from django.conf import settings

from storage.base import Storage
from storage.copies import CopiesStorage
from storage.local import LocalStorage

LOCAL = "local"
COMPOUND_SEPARATOR = "+"


class UnknownStorageLocation(ValueError):
    pass


def s3_names() -> list[str]:
    return list(settings.BACKUP_S3_STORAGES)


def backend_names() -> list[str]:
    """The places that hold bytes: `local` and each S3 location."""
    return [LOCAL, *s3_names()]


def storage_names() -> list[str]:
    """Every valid storage_location: the backends and `local+<s3 name>`."""
    return [*backend_names(), *(f"{LOCAL}{COMPOUND_SEPARATOR}{name}" for name in s3_names())]


def offsite_targets(location: str) -> list[str]:
    """The off-site backends a snapshot stored at LOCATION is copied to."""
    return [name for name in location.split(COMPOUND_SEPARATOR) if name != LOCAL]


def keeps_local_copy(location: str) -> bool:
    return LOCAL in location.split(COMPOUND_SEPARATOR)


def members(location: str) -> list[str]:
    """The backends that may hold a copy of a snapshot stored at LOCATION."""
    _check(location)
    return [LOCAL, *offsite_targets(location)]


def _check(name: str) -> None:
    if name not in storage_names():
        raise UnknownStorageLocation(
            f"unknown storage location {name!r} (configured: {', '.join(storage_names())})"
        )


def get_backend(name: str) -> Storage:
    """One backend by itself: `local`, or an S3 location."""
    if name == LOCAL:
        return LocalStorage(settings.BACKUP_ROOT, name=LOCAL)
    if name in settings.BACKUP_S3_STORAGES:
        return _s3_backend(name, _frozen(settings.BACKUP_S3_STORAGES[name]), os.getpid())
    raise UnknownStorageLocation(
        f"unknown storage backend {name!r} (configured: {', '.join(backend_names())})"
    )


def get_storage(name: str = LOCAL) -> Storage:
    if name == LOCAL:
        return get_backend(LOCAL)
    _check(name)
    targets = offsite_targets(name)
    backends = [get_backend(LOCAL), *(get_backend(target) for target in targets)]
    # Each backend is swept once: `local` under its own name, an S3 backend
    # under its own name (the compound `local+s3` sweeps nothing).
    sweep = None if keeps_local_copy(name) else _offsite_sweeper(backends[1:])
    return CopiesStorage(name, backends, sweep=sweep)


def _offsite_sweeper(backends: list[Storage]) -> Any:
    def sweep(older_than_seconds: float) -> list[str]:
        # A dead upload waits for its run's recovery to resume it: only what
        # is older than BACKUP_S3_ORPHAN_SECONDS (a day) is an orphan, and
        # the uploads our rows still mean to resume are kept.
        from snapshots.offsite_ledger import sweep_orphans

        age = max(older_than_seconds, float(settings.BACKUP_S3_ORPHAN_SECONDS))
        return [item for backend in backends for item in sweep_orphans(backend, age)]

    return sweep


def _frozen(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(values.items()))


@lru_cache(maxsize=16)
def _s3_backend(name: str, values: tuple[tuple[str, Any], ...], pid: int) -> Storage:
    """One client per location, settings and process: boto3 clients are
    thread-safe and pool their connections (building one costs ~50 ms), but
    a pool must not cross a fork (a Celery worker's recovery runs in the
    parent before its pool's children fork)."""
    from storage.s3 import S3Storage
    from storage.s3_config import S3Config

    return S3Storage(S3Config(**dict(values)))
