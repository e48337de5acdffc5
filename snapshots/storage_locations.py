"""Named storage locations configured for this deployment."""

from __future__ import annotations

from django.conf import settings

from storage.base import Storage
from storage.local import LocalStorage


class UnknownStorageLocation(ValueError):
    pass


def storage_names() -> list[str]:
    return ["local"]


def get_storage(name: str = "local") -> Storage:
    if name == "local":
        return LocalStorage(settings.BACKUP_ROOT, name="local")
    raise UnknownStorageLocation(
        f"unknown storage location {name!r} (configured: {', '.join(storage_names())})"
    )
