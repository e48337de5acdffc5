"""Notification target URLs (Apprise's `scheme://...`): how one is shown
masked, and how any text (a log line, an error) is scrubbed of its secrets.

A target URL is a secret as a whole: Apprise puts tokens in the host
(`slack://T1/B2/X3`), in the path (`json://host/hook/<token>`), in the user
and password (`mailto://user:pass@host`) and in query values
(`ntfys://topic?token=...`). So a masked URL keeps only what is surely not
secret: the scheme, and the host and port when the host looks like a host
name or an IP address (a token does not have a dotted, letter-ended name).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote

MASK = "…"
# scheme://[userinfo@]hostport[/path][?query][#fragment], split by hand:
# urllib refuses ports such as Telegram's "123:ABC" bot tokens.
_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?:(?P<userinfo>[^@/?#]*)@)?"
    r"(?P<hostport>[^/?#]*)"
    r"(?P<path>/[^?#]*)?"
    r"(?:\?(?P<query>[^#]*))?"
    r"(?:#(?P<fragment>.*))?$",
    re.DOTALL,
)
# Any URL-looking run of text inside a longer message.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# Query values that are settings, not secrets (their values are words such
# as "insecure", "yes", "json"); every other value is treated as secret.
_SETTING_KEYS = frozenset(
    {"mode", "secure", "format", "overflow", "verify", "rto", "cto", "method", "retry", "wait",
     "optional", "emojis", "pgp", "priority", "tz", "lang"}
)  # fmt: skip
# Fragments shorter than this are not replaced in free text: "no" or "25"
# would mangle every message and hide nothing worth hiding.
_MIN_FRAGMENT = 3


def _host_is_public(host: str) -> bool:
    """True for a DNS name with a letter-only last label, an IP address or
    localhost: the parts an operator needs to tell targets apart."""
    if host.lower() == "localhost":
        return True
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(candidate)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return (
        len(labels) >= 2
        and len(host) <= 253
        and all(_LABEL.match(label) for label in labels)
        and labels[-1].isalpha()
    )


def _split_hostport(hostport: str) -> tuple[str, str]:
    """(host, port) where port is digits or ""."""
    if hostport.startswith("["):  # [IPv6]:port
        end = hostport.find("]")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        return host, rest[1:] if rest.startswith(":") and rest[1:].isdigit() else ""
    host, _, port = hostport.rpartition(":")
    if host and port.isdigit():
        return host, port
    return hostport, ""


def mask_target(url: str) -> str:
    """The URL with every possibly secret part replaced by "…", e.g.
    "mailto://…@smtp.example.com:587/…" or "slack://…". Never a secret."""
    match = _URL.match(url.strip()) if isinstance(url, str) else None
    if match is None:
        return MASK
    scheme = match["scheme"].lower()
    host, port = _split_hostport(match["hostport"] or "")
    shown = f"{scheme}://"
    if match["userinfo"] is not None:
        shown += f"{MASK}@"
    if host and _host_is_public(host):
        shown += host.lower() + (f":{port}" if port else "")
    else:
        return f"{scheme}://{MASK}"
    if (match["path"] or "").strip("/") or match["query"] or match["fragment"]:
        shown += f"/{MASK}"
    return shown


def secret_fragments(url: str) -> set[str]:
    """Every piece of URL that could be secret, in the forms it may appear
    in a message (as written, percent-decoded, percent-encoded)."""
    # Not the whole URL: its pieces go, and what is left (scheme, public
    # host) is then masked like any URL, so a message still says where.
    pieces: set[str] = set()
    match = _URL.match(url.strip())
    if match is None:
        pieces.update({url, url.strip()})
    else:
        userinfo = match["userinfo"] or ""
        pieces.add(userinfo)
        pieces.update(userinfo.split(":", 1))
        host, _port = _split_hostport(match["hostport"] or "")
        if not _host_is_public(host):
            pieces.add(match["hostport"] or "")
            pieces.add(host)
        path = match["path"] or ""
        pieces.add(path)
        pieces.update(path.split("/"))
        for key, value in parse_qsl(match["query"] or "", keep_blank_values=True):
            if key.lower() not in _SETTING_KEYS:
                pieces.add(value)
                pieces.update(value.split(","))
        pieces.add(match["fragment"] or "")
    expanded: set[str] = set()
    for piece in pieces:
        expanded.update({piece, unquote(piece), quote(piece, safe=""), quote(piece, safe="/@:")})
    return {piece for piece in expanded if len(piece) >= _MIN_FRAGMENT}


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """TEXT with every URL in it masked, and every secret piece of URLS
    replaced (longest first, so a password inside a longer token goes too)
    in the text between those URLs."""
    fragments: set[str] = set()
    for url in urls:
        fragments |= secret_fragments(url)
    ordered = sorted(fragments, key=len, reverse=True)

    def clean(part: str) -> str:
        for fragment in ordered:
            part = part.replace(fragment, MASK)
        return part

    pieces: list[str] = []
    position = 0
    for found in _URL_IN_TEXT.finditer(text):
        pieces.append(clean(text[position : found.start()]))
        pieces.append(mask_target(found.group(0)))
        position = found.end()
    pieces.append(clean(text[position:]))
    return "".join(pieces)
