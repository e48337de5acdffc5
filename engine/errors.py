"""Errors the engine raises. Each message is safe to show to a user: it
never contains a password, key or passphrase."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: something the operator can read and act on."""


class AppNotFound(EngineError):
    pass


class VolumeNotFound(EngineError):
    pass


class DockerUnavailable(EngineError):
    pass


class StorageError(EngineError):
    pass


class StorageFull(StorageError):
    """The destination ran out of space; nothing was written under a final name."""


class ObjectNotFound(StorageError):
    pass


class ArchiveError(EngineError):
    """The archive is unreadable, truncated, or does not match its manifest."""


class ChecksumMismatch(ArchiveError):
    pass


class DecryptionError(ArchiveError):
    """Wrong key or passphrase, or the encrypted data was tampered with."""


class DatabaseDumpError(EngineError):
    pass


class DatabaseRestoreError(DatabaseDumpError):
    """Restoring a dump failed. A subclass of DatabaseDumpError so a caller
    that handles "the database step failed" catches both."""


class AppLocked(EngineError):
    """Another backup or restore of the same app is running."""


class LeaseLost(EngineError):
    """The run no longer holds its app's lease (it expired, or recovery took
    it over): it must not change the app's state any more."""
