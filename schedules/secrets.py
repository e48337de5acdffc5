"""Notification target lists encrypted at rest (Fernet, rotatable).

Keys: BACKUP_SECRET_KEYS (comma-separated Fernet keys, or
BACKUP_SECRET_KEYS_FILE): the first encrypts, every one decrypts, so a key
is rotated by putting a new one first, running `manage.py rotate_secrets`
(re-encrypts every stored list with it), then dropping the old one. Unset:
one key derived from DJANGO_SECRET_KEY (HKDF), so `make run` works with
nothing configured; that derived key also stays a decrypt-only key once
explicit keys are set, so moving to them is just "set, rotate".

A stored list is a Fernet token of the JSON list of URLs; "" means none.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from schedules.target_urls import mask_target, scrub

__all__ = [
    "SecretsUnavailable",
    "decrypt_targets",
    "encrypt_targets",
    "mask_target",
    "parse_keys",
    "rotate_token",
    "scrub",
    "validate_target",
]

logger = logging.getLogger(__name__)

MAX_TARGETS = 20
MAX_URL_LENGTH = 2048
_HKDF_SALT = b"docker-app-backup/schedules.secrets"
_HKDF_INFO = b"notification targets v1"


class SecretsUnavailable(Exception):
    """A stored list cannot be decrypted with the configured keys."""


def parse_keys(raw: Sequence[str], variable: str = "BACKUP_SECRET_KEYS") -> list[bytes]:
    """The Fernet keys in RAW, checked; ValueError naming VARIABLE and the
    key's position (never its value) when one is malformed."""
    keys: list[bytes] = []
    for position, key in enumerate(raw, start=1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            decoded = b""
        if len(decoded) != 32:
            raise ValueError(
                f"{variable}: key {position} of {len(raw)} is not a Fernet key (32 bytes, "
                'url-safe base64, 44 characters); make one with `python -c "from '
                'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
            )
        keys.append(key.encode("ascii"))
    return keys


def derived_key(secret_key: str) -> bytes:
    """A Fernet key derived from SECRET_KEY (HKDF-SHA256)."""
    material = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(
        secret_key.encode("utf-8")
    )
    return base64.urlsafe_b64encode(material)


def _fernet() -> MultiFernet:
    # Read on every use: settings may change in tests, and keys are cheap.
    from django.conf import settings

    keys = parse_keys(list(getattr(settings, "BACKUP_SECRET_KEYS", [])))
    fallback = derived_key(settings.SECRET_KEY)
    if fallback not in keys:
        keys.append(fallback)  # first when nothing is set; else decrypt-only
    return MultiFernet([Fernet(key) for key in keys])


def encrypt_targets(urls: list[str]) -> str:
    """URLS as a token for the database; "" for an empty list."""
    if not urls:
        return ""
    return _fernet().encrypt(json.dumps(list(urls)).encode("utf-8")).decode("ascii")


def decrypt_targets(token: str) -> list[str]:
    """The URLs in TOKEN; [] for "". SecretsUnavailable when no configured
    key opens it (the keys changed without rotate_secrets)."""
    if not token:
        return []
    try:
        urls = json.loads(_fernet().decrypt(token.encode("ascii")))
    except (InvalidToken, UnicodeEncodeError, ValueError):
        raise SecretsUnavailable(
            "the stored notification targets cannot be decrypted with the configured keys "
            "(BACKUP_SECRET_KEYS or DJANGO_SECRET_KEY changed without `manage.py "
            "rotate_secrets`?); set the targets again"
        ) from None
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise SecretsUnavailable("the stored notification targets are not a list of URLs")
    return urls


def rotate_token(token: str) -> str:
    """TOKEN re-encrypted with the first key (its content unchanged)."""
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError):
        raise SecretsUnavailable(
            "cannot be decrypted with the configured keys; it was left as it is"
        ) from None


def validate_target(url: str) -> None:
    """ValueError with a secret-free message unless Apprise can use URL."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("a notification target must be a non-empty URL such as json://host/path")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"a notification target may be at most {MAX_URL_LENGTH} characters")
    if any(ord(char) < 32 for char in url):
        raise ValueError("a notification target may not contain control characters or newlines")
    url = url.strip()
    shown = mask_target(url)
    scheme, separator, _rest = url.partition("://")
    if not separator or not scheme:
        raise ValueError(f"{shown} is not a URL: expected scheme://..., e.g. mailto://…")
    import apprise
    from apprise.manager_plugins import NotificationManager

    if scheme.lower() not in NotificationManager():
        raise ValueError(f"unknown notification scheme {scheme.lower()!r}:// (see Apprise's list)")
    # Apprise logs why it refuses a URL through the `apprise` logger, which
    # our filter scrubs (schedules/notify.py); the message here is ours.
    from schedules.notify import scrubbed_apprise_logs

    with scrubbed_apprise_logs([url]):
        plugin = apprise.Apprise.instantiate(url, asset=apprise.AppriseAsset(storage_mode="memory"))
    if plugin is None:
        raise ValueError(
            f"{shown}: Apprise cannot use this {scheme.lower()}:// URL (a required part is "
            "missing or malformed; see Apprise's page for the service)"
        )


def validate_targets(urls: object) -> list[str]:
    """URLS checked (a list of at most MAX_TARGETS valid URLs), stripped;
    ValueError naming the position of the first bad one."""
    if not isinstance(urls, list):
        raise ValueError("targets must be a list of URLs")
    if len(urls) > MAX_TARGETS:
        raise ValueError(f"at most {MAX_TARGETS} notification targets")
    cleaned: list[str] = []
    for position, url in enumerate(urls, start=1):
        try:
            validate_target(url)
        except ValueError as exc:
            raise ValueError(f"target {position}: {exc}") from None
        cleaned.append(url.strip())
    return cleaned


def masked(token: str) -> list[str]:
    """The masked URLs of a stored list, for display; ["(cannot be
    decrypted: …)"] when the keys do not open it, so a page never fails."""
    try:
        return [mask_target(url) for url in decrypt_targets(token)]
    except SecretsUnavailable:
        return ["(cannot be decrypted with the configured keys)"]


@dataclass
class RotationResult:
    rotated: int = 0
    unreadable: list[str] = field(default_factory=list)  # e.g. "schedule 4", "app wordpress"


def rotate_all() -> RotationResult:
    """Re-encrypt every stored target list (schedules' and apps') with the
    first key, each row under a lock so a concurrent edit is not lost."""
    from django.db import transaction

    from schedules.models import AppNotificationTargets, Schedule

    result = RotationResult()
    sources = (
        (Schedule, "notification_targets_encrypted", "schedule"),
        (AppNotificationTargets, "targets_encrypted", "app"),
    )
    for model, column, label in sources:
        for pk in model.objects.exclude(**{column: ""}).values_list("pk", flat=True):
            with transaction.atomic():
                row = model.objects.select_for_update().filter(pk=pk).first()
                if row is None or not getattr(row, column):
                    continue
                try:
                    setattr(row, column, rotate_token(getattr(row, column)))
                except SecretsUnavailable:
                    result.unreadable.append(f"{label} {pk}")
                    continue
                # update(): no auto_now bump, no save() side effects (beat projection).
                model.objects.filter(pk=pk).update(**{column: getattr(row, column)})
                result.rotated += 1
    return result
