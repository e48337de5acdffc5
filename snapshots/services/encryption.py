"""Encryption settings turned into engine options: who can write and read."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from engine.errors import EngineError
from engine.secret import Secret


class EncryptionNotConfigured(EngineError):
    pass


def passphrase() -> Secret | None:
    return Secret(settings.BACKUP_PASSPHRASE) if settings.BACKUP_PASSPHRASE else None


def encryption_configured() -> bool:
    return bool(settings.BACKUP_AGE_RECIPIENTS) or passphrase() is not None


def write_options(encrypt: bool | None) -> tuple[tuple[str, ...], Secret | None]:
    """(recipients, passphrase) for a new backup. ENCRYPT None = as configured."""
    if encrypt is False:
        return (), None
    if not encryption_configured():
        if encrypt:
            raise EncryptionNotConfigured(
                "encryption was requested but neither BACKUP_AGE_RECIPIENTS nor "
                "BACKUP_PASSPHRASE is configured"
            )
        return (), None
    return tuple(settings.BACKUP_AGE_RECIPIENTS), passphrase()


def identities() -> list[str]:
    """age identities (AGE-SECRET-KEY-1...) from BACKUP_AGE_IDENTITY_FILE."""
    path = settings.BACKUP_AGE_IDENTITY_FILE
    if not path:
        return []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise EncryptionNotConfigured(
            f"BACKUP_AGE_IDENTITY_FILE {path} cannot be read: {exc.strerror}"
        ) from None
    return [line.strip() for line in lines if line.strip().startswith("AGE-SECRET-KEY-")]
