"""Why a restore is refused before it starts (nothing changed)."""

from __future__ import annotations

from engine.errors import EngineError


class RestoreRefused(EngineError):
    """The restore cannot start (snapshot not restorable, app busy); nothing changed."""


class SnapshotNotFound(RestoreRefused):
    pass


class AppBusy(RestoreRefused):
    pass


class NoDatabaseRollback(RestoreRefused):
    """The restore would change databases that a failure could not put back."""
