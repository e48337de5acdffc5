"""API keys: create (the key is returned once, never stored), check, scope,
revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from snapshots.models_api import ApiKey

KEY_SCHEME = "bk"
# last_used_at is written at most this often per key: a write on every
# request would turn every read of the API into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)
_PREFIX_ATTEMPTS = 5
# Each scope includes the ones before it.
SCOPE_ORDER = (ApiKey.Scope.READ, ApiKey.Scope.OPERATE, ApiKey.Scope.ADMIN)


class ApiKeyError(ValueError):
    pass


def _hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def parse_scope(value: str) -> ApiKey.Scope:
    """VALUE as a scope, or an ApiKeyError naming the valid ones."""
    try:
        return ApiKey.Scope(value.strip().lower())
    except ValueError:
        valid = ", ".join(SCOPE_ORDER)
        raise ApiKeyError(f"unknown API key scope {value!r}; one of {valid}") from None


def scope_allows(granted: str, required: str) -> bool:
    """Whether a key of scope GRANTED may do what needs REQUIRED. An unknown
    value on either side allows nothing (a corrupted row fails closed)."""
    if granted not in SCOPE_ORDER or required not in SCOPE_ORDER:
        return False
    return SCOPE_ORDER.index(granted) >= SCOPE_ORDER.index(required)


def create_api_key(name: str, scope: str = ApiKey.Scope.OPERATE) -> tuple[ApiKey, str]:
    """A new key named NAME with SCOPE (operate unless told): (row, raw key).
    The raw key exists only in this return value; show it to the user once."""
    name = name.strip()
    if not name:
        raise ApiKeyError("an API key needs a name (who or what uses it)")
    scope = parse_scope(scope)
    for _ in range(_PREFIX_ATTEMPTS):
        # The prefix finds the row; the secret part carries 256 random bits.
        prefix = secrets.token_hex(4)
        raw_key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    name=name, prefix=prefix, key_hash=_hash(raw_key), scope=scope
                )
        except IntegrityError:
            continue  # two keys drew the same prefix: draw again
        return key, raw_key
    raise ApiKeyError("could not find a free key prefix; try again")


def authenticate_api_key(raw_key: str) -> ApiKey | None:
    """The active key RAW_KEY names, or None. The hash is compared with
    hmac.compare_digest, so response time tells nothing about how much of a
    guessed key was right."""
    scheme, _, rest = raw_key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not prefix or not secret or len(raw_key) > 200:
        return None
    key = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(raw_key)):
        return None
    _touch(key)
    return key


def _touch(key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    key.last_used_at = now
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


def set_api_key_scope(key: ApiKey, scope: str) -> ApiKey:
    """Give KEY the scope SCOPE; it applies from the key's next request."""
    key.scope = parse_scope(scope)
    ApiKey.objects.filter(pk=key.pk).update(scope=key.scope)
    return key


def revoke_api_key(key: ApiKey) -> bool:
    """Revoke KEY; False if it already was. Revoked keys stay listed (who had
    access, until when) and never work again."""
    revoked = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    key.refresh_from_db()
    return revoked == 1


def find_api_key(prefix: str) -> ApiKey:
    key = ApiKey.objects.filter(prefix=prefix).first()
    if key is None:
        raise ApiKeyError(f"no API key with prefix {prefix!r}")
    return key
