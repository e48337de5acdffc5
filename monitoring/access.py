"""Who may read GET /metrics: a request with `Authorization: Bearer
<BACKUP_METRICS_TOKEN>`, one from an address in BACKUP_METRICS_ALLOW, or one
with an API key (any scope: read covers metrics).

Wrong or unusable credentials are a 401 even from an allowed address, so a
misconfigured scraper is noticed. No credentials: a 403 when an allow-list
exists and the address is not in it, else a 401. The address is the TCP
peer (REMOTE_ADDR), never X-Forwarded-For, which any client can write."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

from snapshots.services.api_keys import authenticate_api_key


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 or 403
    message: str


def _digest(value: str) -> bytes:
    # Equal lengths for compare_digest, whatever was sent.
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def token_matches(sent: str) -> bool:
    """SENT is the configured token, compared in constant time."""
    expected = settings.BACKUP_METRICS_TOKEN
    return bool(expected) and hmac.compare_digest(_digest(sent), _digest(expected))


@lru_cache(maxsize=8)
def _networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry) for entry in entries)


def address_allowed(address: str) -> bool:
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped  # ::ffff:10.1.2.3 is 10.1.2.3
    return any(peer in network for network in _networks(tuple(settings.BACKUP_METRICS_ALLOW)))


def check(request: HttpRequest) -> Refusal | None:
    """None when REQUEST may read the metrics, else why not. The messages
    never repeat what was sent."""
    authorization = request.META.get("HTTP_AUTHORIZATION")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token_matches(token.strip()):
            return None
        return Refusal(401, "invalid bearer token for /metrics")
    api_key = request.META.get("HTTP_X_API_KEY")
    if api_key is not None:
        if authenticate_api_key(api_key.strip()) is not None:
            return None
        return Refusal(401, "invalid or revoked API key")
    if settings.BACKUP_METRICS_ALLOW:
        if address_allowed(request.META.get("REMOTE_ADDR", "")):
            return None
        return Refusal(403, "this address is not in BACKUP_METRICS_ALLOW; send a bearer token")
    return Refusal(
        401, "/metrics needs Authorization: Bearer <BACKUP_METRICS_TOKEN> or an X-API-Key"
    )
