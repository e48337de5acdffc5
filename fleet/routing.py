"""Which host's queue new work for an app goes to, decided in the web
process from the stored inventory and heartbeats (never from Docker).

An app is (host_id, app_id): its backups and restores run on the worker
of the host it is on, so they are sent to that host's queue host.<id>. A
host that stopped heartbeating gets no new work: the request is refused at
once rather than queued for a worker that may never come back."""

from __future__ import annotations

from engine.errors import AppNotFound
from fleet.errors import UnknownHost
from fleet.selectors import get_host, locate_app, require_online


def host_queue(host_id: str) -> str:
    return f"host.{host_id}"


def route_app(app_id: str, host_id: str | None = None) -> str:
    """The id of the one online host that has APP_ID (on HOST_ID when given).
    AppNotFound, AppOnManyHosts, UnknownHost or HostOffline otherwise."""
    hosted = locate_app(app_id, host_id)
    require_online(hosted.host)
    return hosted.host.host.id


def route_to_host(host_id: str) -> str:
    """HOST_ID if its worker is online (work bound to one host: a snapshot
    stored on its local disk); UnknownHost or HostOffline otherwise."""
    state = get_host(host_id)
    if state is None:
        raise UnknownHost(f"no host {host_id!r}: no worker with that BACKUP_HOST_ID has reported")
    require_online(state)
    return host_id


def route_bound(host_id: str) -> str:
    """HOST_ID, for work bound to it by what it holds (a snapshot it made),
    not named by the caller: refused at once when its worker is known to be
    offline. A host no worker ever registered (snapshots the CLI made on a
    host whose worker never ran) is queued for as before the fleet; no
    worker taking it, BACKUP_PENDING_TIMEOUT_SECONDS fails the run."""
    state = get_host(host_id)
    if state is not None:
        require_online(state)
    return host_id


def route_app_or_bound(app_id: str, bound_host: str) -> str:
    """route_app, or for an app on no host's inventory route_bound(BOUND_HOST)."""
    try:
        return route_app(app_id)
    except AppNotFound:
        return route_bound(bound_host)
