"""Errors the engine raises. Each message is safe to show to a user: it
never contains a password, key or passphrase."""

from __future__ import annotations

import signal


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


class Terminated(BaseException):
    """The process was told to stop (SIGTERM, SIGINT) in the middle of an
    operation: engine.termination raises it in the main thread.

    Not an Exception, so no `except Exception` on the way swallows it, while
    every `finally` and rollback still runs: the operation ends through the
    same path as any failure. The service marks the run failed with this
    message and raises it again, so the process still ends."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    def __reduce__(self) -> tuple[type[Terminated], tuple[int]]:
        return (Terminated, (self.signum,))


def with_notes(message: str, exc: BaseException) -> str:
    """MESSAGE followed by the notes added to EXC on its way up: what the
    cleanup after the failure could not undo (containers left paused...)."""
    return "; ".join([message, *getattr(exc, "__notes__", ())])


def describe(exc: BaseException) -> str:
    """An exception for a run's record: its type and the start of its text
    (a ConnectionError's text alone says little)."""
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def brief(exc: BaseException) -> str:
    """Like describe, but the engine's own messages (and a signal's) as they are."""
    if isinstance(exc, EngineError | Terminated):
        return str(exc)
    return describe(exc)
