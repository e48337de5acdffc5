"""Reads of the fleet: hosts with their online/stale state, and the stored
inventory of apps. Ages are computed by the database's clock (every host
writes by it too), so no worker's clock drift makes a host look dead."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, F, QuerySet, TextField
from django.db.models.functions import Cast, Now

from engine.errors import AppNotFound
from fleet.errors import AppOnManyHosts, HostOffline, UnknownHost
from fleet.inventory_store import StoredApp, from_json
from fleet.models import Host, HostApp

# A BACKUP_HOST_ID as settings.py accepts it.
HOST_ID_PATTERN = r"[A-Za-z0-9._-]{1,128}"
_HOST_ID = re.compile(HOST_ID_PATTERN)


def validate_host_id(host_id: object) -> str:
    """HOST_ID if it has a host id's shape; UnknownHost otherwise, so junk
    (NUL bytes, 10 kB) never reaches a query."""
    if isinstance(host_id, str) and _HOST_ID.fullmatch(host_id):
        return host_id
    shown = repr(host_id)[:80]
    raise UnknownHost(f"no host {shown}: a host id has letters, digits, '.', '-' and '_'")


@dataclass(frozen=True)
class HostState:
    host: Host
    heartbeat_age_seconds: float | None  # None: never heartbeated
    inventory_age_seconds: float | None  # None: never reported
    apps: int = 0  # in its last inventory

    @property
    def online(self) -> bool:
        age = self.heartbeat_age_seconds
        return age is not None and age < settings.BACKUP_HOST_OFFLINE_SECONDS

    @property
    def inventory_stale(self) -> bool:
        age = self.inventory_age_seconds
        return age is None or age >= settings.BACKUP_INVENTORY_STALE_SECONDS


@dataclass(frozen=True)
class HostedApp:
    """An app on one host, from that host's last inventory."""

    host: HostState
    app: StoredApp


def _seconds(age: object) -> float | None:
    return None if age is None else max(age.total_seconds(), 0.0)  # type: ignore[attr-defined]


def _with_ages(rows: QuerySet[Host]) -> QuerySet[Host]:
    return rows.annotate(
        heartbeat_age=Now() - F("last_heartbeat"), inventory_age=Now() - F("inventory_at"),
        app_count=Count("apps"),
    )  # fmt: skip


def _state(host: Host) -> HostState:
    ages = host.heartbeat_age, host.inventory_age  # type: ignore[attr-defined]
    return HostState(host, _seconds(ages[0]), _seconds(ages[1]), host.app_count)  # type: ignore[attr-defined]


def list_hosts() -> list[HostState]:
    return [_state(host) for host in _with_ages(Host.objects.all())]


def get_host(host_id: str) -> HostState | None:
    validate_host_id(host_id)
    host = _with_ages(Host.objects.filter(pk=host_id)).first()
    return None if host is None else _state(host)


def hosted_apps(app_id: str | None = None, host_id: str | None = None) -> list[HostedApp]:
    """The stored apps (one per host that has it), by app id then host id:
    two queries whatever the number of apps; one for one app id."""
    if app_id is not None:
        return _hosted_app(app_id, host_id)
    states = {state.host.id: state for state in list_hosts()}
    rows = HostApp.objects.all()
    if app_id is not None:
        rows = rows.filter(app_id=app_id)
    if host_id is not None:
        rows = rows.filter(host_id=host_id)
    return [
        HostedApp(states[host], from_json(app, data))
        for host, app, data in rows.order_by("app_id", "host_id").values_list(
            "host_id", "app_id", "inventory"
        )
        if host in states
    ]


def _hosted_app(app_id: str, host_id: str | None) -> list[HostedApp]:
    """hosted_apps of one app id in one query, its hosts' ages joined in
    (what routing a task reads: bench/bench_fleet.py), without counting
    every host's apps as list_hosts does (its HostState.apps is 0 here)."""
    rows = HostApp.objects.filter(app_id=app_id).select_related("host")
    if host_id is not None:
        rows = rows.filter(host_id=host_id)
    rows = rows.annotate(
        heartbeat_age=Now() - F("host__last_heartbeat"),
        inventory_age=Now() - F("host__inventory_at"),
    )
    return [
        HostedApp(
            HostState(row.host, _seconds(row.heartbeat_age), _seconds(row.inventory_age)),  # type: ignore[attr-defined]
            from_json(row.app_id, row.inventory),
        )
        for row in rows.order_by("host_id")
    ]


def hosted_inventories(host_id: str | None = None) -> list[tuple[HostState, str, str]]:
    """(host, app id, stored inventory as JSON text) of every stored app (of
    HOST_ID's only when given), by app id then host id: hosted_apps without
    decoding or building anything, for GET apps, which decodes only the
    inventories that changed since it last did (snapshots/api/app_json.py)."""
    states = {state.host.id: state for state in list_hosts()}
    rows = HostApp.objects.all() if host_id is None else HostApp.objects.filter(host_id=host_id)
    texts = rows.annotate(text=Cast("inventory", TextField())).order_by("app_id", "host_id")
    return [
        (states[host], app, text)
        for host, app, text in texts.values_list("host_id", "app_id", "text")
        if host in states
    ]


def locate_app(app_id: str, host_id: str | None = None) -> HostedApp:
    """The one host's stored app APP_ID (on HOST_ID when given). AppNotFound
    when no inventory has it, AppOnManyHosts when several do and HOST_ID is
    not given, UnknownHost for a HOST_ID no worker ever registered."""
    if host_id is not None and not Host.objects.filter(pk=validate_host_id(host_id)).exists():
        raise UnknownHost(f"no host {host_id!r}: no worker with that BACKUP_HOST_ID has reported")
    found = hosted_apps(app_id=app_id, host_id=host_id)
    if not found:
        where = f"host {host_id!r}" if host_id else "any host"
        raise AppNotFound(
            f"no app {app_id!r} on {where}: no host's inventory has a Compose project by that "
            f"name (each worker reports every {settings.BACKUP_INVENTORY_INTERVAL_SECONDS} s; "
            "POST hosts/<host_id>/refresh asks for a report now)"
        )
    if len(found) > 1:
        raise AppOnManyHosts(app_id, [hosted.host.host.id for hosted in found])
    return found[0]


def require_online(state: HostState) -> None:
    """HostOffline unless STATE's worker heartbeated lately."""
    if not state.online:
        age = state.heartbeat_age_seconds
        seen = "never heartbeated" if age is None else f"last heartbeat {age:.0f} s ago"
        raise HostOffline(
            f"host {state.host.id} is offline ({seen}; offline after "
            f"{settings.BACKUP_HOST_OFFLINE_SECONDS} s): new work for its apps is refused "
            "until its worker runs again"
        )
