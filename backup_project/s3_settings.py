"""S3 storage locations from the environment, parsed strictly.

The default location `s3` is read from BACKUP_S3_*; more named locations
from BACKUP_S3_LOCATIONS=name,... and then BACKUP_S3_<NAME>_* (the name in
upper case, '-' and '.' as '_'). A location exists only when its bucket is
set. A malformed value stops startup with an error naming the variable; a
secret's value never appears in an error (only that it is missing or set
twice)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from backup_project.env import Env

DEFAULT_NAME = "s3"
# S3's bucket naming rules (the strict, DNS-compatible ones every server takes).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# A location's name: also a storage_location value and part of "local+<name>".
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,30}$")
_ADDRESSING = ("path", "virtual", "auto")
_CHECKSUMS = ("when_required", "when_supported")
MIB = 1024 * 1024


def _var_prefix(name: str) -> str:
    if name == DEFAULT_NAME:
        return "BACKUP_S3_"
    return "BACKUP_S3_" + re.sub(r"[-.]", "_", name).upper() + "_"


def _choice(env: Env, var: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.str(var, default).strip() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{var} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _endpoint(env: Env, var: str) -> str | None:
    value = env.url(var, default="", schemes=("http", "https"))
    if not value:
        return None
    parts = urlsplit(value)
    if parts.username or parts.password:
        # A URL is often logged or shown; credentials belong in their own variables.
        raise ImproperlyConfigured(
            f"{var} must not carry credentials; use the ACCESS_KEY_ID and "
            "SECRET_ACCESS_KEY variables"
        )
    return value.rstrip("/")


def _prefix(env: Env, var: str) -> str:
    value = env.str(var, "").strip()
    if not value:
        return ""
    if value.startswith("/") or ".." in value.split("/") or "\\" in value:
        raise ImproperlyConfigured(
            f"{var} must be a relative key prefix without '..' or backslashes, got {value!r}"
        )
    return value if value.endswith("/") else value + "/"


def parse_location(env: Env, name: str) -> dict[str, Any] | None:
    """The settings of location NAME, or None when its bucket is not set."""
    p = _var_prefix(name)
    bucket = env.str(f"{p}BUCKET", "").strip()
    if not bucket:
        for var in ("ENDPOINT_URL", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "PREFIX"):
            if env.str(f"{p}{var}", ""):
                raise ImproperlyConfigured(f"{p}{var} is set but {p}BUCKET is not")
        return None
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ImproperlyConfigured(
            f"{p}BUCKET is not a valid bucket name (3-63 lower-case letters, digits, '.', '-'), "
            f"got {bucket!r}"
        )
    region = env.str(f"{p}REGION", "us-east-1").strip() or "us-east-1"
    if not _REGION.match(region):
        raise ImproperlyConfigured(f"{p}REGION is not a valid region name, got {region!r}")
    access_key = env.str(f"{p}ACCESS_KEY_ID", "").strip()
    secret_key = env.str(f"{p}SECRET_ACCESS_KEY", "").strip()
    if bool(access_key) != bool(secret_key):
        missing = "SECRET_ACCESS_KEY" if access_key else "ACCESS_KEY_ID"
        raise ImproperlyConfigured(
            f"{p}{missing} (or {p}{missing}_FILE) must be set with "
            f"{p}{'ACCESS_KEY_ID' if missing == 'SECRET_ACCESS_KEY' else 'SECRET_ACCESS_KEY'}"
        )
    checksums = _choice(env, f"{p}CHECKSUMS", "when_required", _CHECKSUMS)
    part_mb = env.int(f"{p}PART_SIZE_MB", 8, minimum=5)
    if part_mb > 5 * 1024:
        raise ImproperlyConfigured(f"{p}PART_SIZE_MB must be <= 5120 (S3's largest part)")
    return {
        "name": name,
        "bucket": bucket,
        "region": region,
        "endpoint_url": _endpoint(env, f"{p}ENDPOINT_URL"),
        "access_key": access_key or None,
        "secret_key": secret_key or None,
        "prefix": _prefix(env, f"{p}PREFIX"),
        "addressing_style": _choice(env, f"{p}ADDRESSING_STYLE", "path", _ADDRESSING),
        "request_checksum_calculation": checksums,
        "response_checksum_validation": checksums,
        "part_size": part_mb * MIB,
        "concurrency": env.int(f"{p}CONCURRENCY", 4, minimum=1),
    }


def s3_locations(env: Env) -> dict[str, dict[str, Any]]:
    """Every configured S3 location by name: `s3` (when BACKUP_S3_BUCKET is
    set) and each of BACKUP_S3_LOCATIONS."""
    locations: dict[str, dict[str, Any]] = {}
    default = parse_location(env, DEFAULT_NAME)
    if default is not None:
        locations[DEFAULT_NAME] = default
    for name in env.list("BACKUP_S3_LOCATIONS", []):
        if not _NAME.match(name) or name in ("local", DEFAULT_NAME) or "+" in name:
            raise ImproperlyConfigured(
                "BACKUP_S3_LOCATIONS: each name must be 1-31 lower-case letters, digits, '_', "
                f"'.', '-' and not 'local' or 's3', got {name!r}"
            )
        if name in locations:
            raise ImproperlyConfigured(f"BACKUP_S3_LOCATIONS names {name!r} twice")
        parsed = parse_location(env, name)
        if parsed is None:
            raise ImproperlyConfigured(
                f"BACKUP_S3_LOCATIONS names {name!r} but {_var_prefix(name)}BUCKET is not set"
            )
        locations[name] = parsed
    return locations
