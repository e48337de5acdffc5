"""Strict reading of settings from environment variables.

Every setting comes from the environment (twelve-factor). A value that is
present but malformed stops the process at startup with a message naming the
variable, instead of silently falling back to a default: a typo such as
``DEBUG=ture`` must not turn into ``False`` in production.

Secrets may be given as ``NAME_FILE`` (a path, as with Docker secrets); the
file's content, stripped of a trailing newline, is the value.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from engine.age.keys import parse_identity, parse_identity_file, parse_recipient

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Env:
    """Typed accessors over a mapping of environment variables."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def _raw(self, name: str) -> str | None:
        """The value of NAME, or the content of the file NAME_FILE points to."""
        file_var = f"{name}_FILE"
        value = self._environ.get(name)
        path = self._environ.get(file_var)
        if value is not None and path is not None:
            raise ImproperlyConfigured(f"{name} and {file_var} are both set; set only one")
        if path is not None:
            try:
                return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                # The path is not secret; the content never appears in the message.
                raise ImproperlyConfigured(
                    f"{file_var}={path!r} cannot be read: {exc.strerror}"
                ) from None
        return value

    def str(self, name: str, default: str = "") -> str:
        value = self._raw(name)
        return default if value is None else value

    def bool(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None or value == "":
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"{name} must be a boolean (one of {sorted(_TRUE | _FALSE)}), got {value!r}"
        )

    def int(self, name: str, default: int, minimum: int | None = None) -> int:
        value = self._raw(name)
        if value is None or value == "":
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {number}")
        return number

    def list(self, name: str, default: list[str] | None = None) -> list[str]:
        """Comma-separated list; blanks are dropped."""
        value = self._raw(name)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]

    def url(self, name: str, default: str = "", schemes: tuple[str, ...] = ()) -> str:
        """A URL whose scheme is one of SCHEMES. The value is never echoed back,
        since URLs often carry passwords."""
        value = self._raw(name)
        if value is None or value == "":
            return default
        value = value.strip()
        parts = urlsplit(value)
        if not parts.scheme or (schemes and parts.scheme not in schemes):
            allowed = ", ".join(f"{s}://" for s in schemes) or "any scheme"
            raise ImproperlyConfigured(
                f"{name} is not a valid URL (expected {allowed}, got scheme {parts.scheme!r})"
            )
        if parts.scheme not in ("sqlite", "filesystem", "memory") and not parts.hostname:
            raise ImproperlyConfigured(f"{name} is not a valid URL: it has no host")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ImproperlyConfigured(f"{name} is not a valid URL: bad port") from None
        return value

    def networks(self, name: str) -> list[str]:
        """A comma-separated list of IP networks (10.0.0.0/8, ::1, 192.168.1.5),
        each checked here; a host address is a network of one."""
        networks = []
        for entry in self.list(name):
            try:
                networks.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                raise ImproperlyConfigured(
                    f"{name} must be comma-separated IP networks (e.g. 10.0.0.0/8,::1), "
                    f"got {entry!r}"
                ) from None
        return networks

    def path(self, name: str, default: Path) -> Path:
        value = self._raw(name)
        return default if value is None or value == "" else Path(value).expanduser()

    # -- keys: checked when the settings load, so a typo stops startup instead
    # of failing every backup later. No message ever quotes a key.

    def age_recipients(self, name: str) -> list[str]:
        """A comma-separated list of age X25519 recipients (age1...)."""
        recipients = self.list(name)
        for number, recipient in enumerate(recipients, 1):
            try:
                parse_recipient(recipient, f"{name} entry {number}")
            except ValueError as exc:
                raise ImproperlyConfigured(str(exc)) from None
        return recipients

    def age_identity_file(self, name: str) -> str:
        """The path of an age key file (as age-keygen writes it: comments and
        AGE-SECRET-KEY-1... lines), readable and holding valid identities only."""
        path = self.str(name)
        if not path:
            return ""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}={path!r} cannot be read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ImproperlyConfigured(f"{name}={path!r} is not an age key file") from None
        identities = parse_identity_file(text)
        if not identities:
            raise ImproperlyConfigured(
                f"{name}={path!r} holds no age identity (AGE-SECRET-KEY-1... lines)"
            )
        for number, identity in enumerate(identities, 1):
            try:
                parse_identity(identity, f"{name}={path!r}: key line {number}")
            except ValueError as exc:
                raise ImproperlyConfigured(str(exc)) from None
        return path

    def secret(self, name: str) -> str:
        """A secret such as a passphrase: unset or empty NAME is "none", but
        one that is set and blank (NAME_FILE an empty file, NAME spaces)
        would silently turn encryption off, so it stops startup."""
        value = self._raw(name)
        if value is None or (value == "" and f"{name}_FILE" not in self._environ):
            return ""
        if not value.strip():
            where = f"{name}_FILE's file" if f"{name}_FILE" in self._environ else name
            raise ImproperlyConfigured(f"{name} is set but empty ({where} holds no secret)")
        return value
