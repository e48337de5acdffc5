"""Storage keys: what a valid key looks like, and the temporary name an
object has while it is being written.

A key is "<app_id>/<file>" (deeper nesting is allowed). Keys become file
paths (local) and object names (S3), so every backend validates them the same
way before touching anything: a key that could escape the storage root, hide
among temporary files, or mean different things on different backends is
rejected with a ValueError naming the problem.
"""

from __future__ import annotations

import secrets
import unicodedata

from storage.base import TEMP_MARKER

# Portable limits: most filesystems allow 255 bytes per name, S3 1024 per key.
MAX_SEGMENT_BYTES = 255
MAX_KEY_BYTES = 1024

# Cc: control characters (NUL, newline, escape, C1 controls); Cs: lone
# surrogates, which cannot be encoded as UTF-8 and so cannot name an object.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})


def validate_key(key: str) -> str:
    """Return key unchanged if it is a valid object key; raise ValueError."""
    _check(key, "key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return prefix unchanged if list() may take it: "" (everything), or a
    key's beginning, optionally ending in "/"; raise ValueError."""
    if prefix == "":
        return prefix
    # One trailing "/" means "inside this directory"; the rest obeys the key rules.
    body = prefix[:-1] if isinstance(prefix, str) and prefix.endswith("/") else prefix
    if body == "":
        raise ValueError(f"invalid storage prefix {prefix!r}: must be relative, not '/'")
    _check(body, "prefix", original=prefix)
    return prefix


def is_partial_name(name: str) -> bool:
    """True for the last segment of an object still being written."""
    return name.startswith(TEMP_MARKER)


def partial_key(key: str) -> str:
    """A unique temporary name beside key: "<dir>/.partial-<random>-<file>".

    Same directory, so the final rename never crosses a filesystem; the
    random part lets concurrent writers of one key never collide."""
    directory, _, base = key.rpartition("/")
    token = secrets.token_hex(8)
    segment = f"{TEMP_MARKER}{token}-{base}"
    if len(segment.encode()) > MAX_SEGMENT_BYTES:
        # The basename is only a hint for humans; uniqueness comes from the token.
        segment = f"{TEMP_MARKER}{token}"
    return f"{directory}/{segment}" if directory else segment


def _check(text: str, what: str, original: str | None = None) -> None:
    shown = text if original is None else original

    def invalid(reason: str) -> ValueError:
        return ValueError(f"invalid storage {what} {shown!r}: {reason}")

    if not isinstance(text, str):
        raise ValueError(f"invalid storage {what} {shown!r}: must be a str")
    if text == "":
        raise invalid("must not be empty")
    for char in text:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise invalid(f"must not contain control character {char!r}")
        if char == "\\":
            raise invalid("must not contain a backslash")
    if text.startswith("/"):
        raise invalid("must be relative, not start with '/'")
    if len(text.encode()) > MAX_KEY_BYTES:
        raise invalid(f"longer than {MAX_KEY_BYTES} bytes")
    for segment in text.split("/"):
        if segment == "":
            raise invalid("must not contain an empty segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise invalid(f"must not contain a {segment!r} segment")
        if is_partial_name(segment):
            raise invalid(f"segment {segment!r} starts with the temporary marker {TEMP_MARKER!r}")
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise invalid(f"segment longer than {MAX_SEGMENT_BYTES} bytes")


def is_partial_of(temp_key: str, key: str) -> bool:
    """Whether TEMP_KEY is an in-flight write of KEY (see partial_key)."""
    directory, _, base = key.rpartition("/")
    temp_dir, _, temp_base = temp_key.rpartition("/")
    return (
        temp_dir == directory
        and is_partial_name(temp_base)
        and temp_base.endswith(f"-{base}")
        and len(temp_base) == len(TEMP_MARKER) + 16 + 1 + len(base)
    )
