"""The apps on the fleet's Docker hosts that the dashboard's table does not
know yet (no backup, run or schedule): what a new operator must see first,
with a way to back them up. Read from the inventory each host's worker
stores (fleet/), as GET apps reads it: the web process never calls Docker
(it has no socket in docker-compose.yml)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from django.conf import settings

from fleet.selectors import HostState, hosted_inventories, list_hosts


@dataclass(frozen=True)
class ListedApp:
    """An app in a host's stored inventory (fleet.models.HostApp's id)."""

    app_id: str
    host_id: str


@dataclass(frozen=True)
class HostApps:
    apps: list[ListedApp]
    error: str = ""  # why the hosts' apps are not known
    stale: tuple[str, ...] = ()  # notes on hosts whose inventory may be out of date

    @property
    def app_ids(self) -> list[str]:
        return [app.app_id for app in self.apps]

    def without(self, known: Iterable[str]) -> HostApps:
        taken = set(known)
        return replace(self, apps=[app for app in self.apps if app.app_id not in taken])


def host_apps() -> HostApps:
    """Every (app, host) of the hosts' stored inventories, by app id then
    host id; with a note for hosts whose inventory is stale or offline, and
    an error when no worker has reported yet."""
    hosts = list_hosts()
    if not hosts:
        return HostApps([], "no worker has reported its host's apps yet (each host's worker "
                        "stores them once it runs; the web process never asks Docker)")  # fmt: skip
    apps = [ListedApp(app_id, state.host.id) for state, app_id, _ in hosted_inventories()]
    return HostApps(apps, stale=tuple(note for note in map(_note, hosts) if note))


def _note(state: HostState) -> str:
    """Why STATE's apps may be out of date, or ''."""
    if not state.online:
        age = state.heartbeat_age_seconds
        seen = "never" if age is None else f"{age:.0f} s ago"
        return f"host {state.host.id} is offline (last heartbeat {seen})"
    if state.inventory_stale:
        age = state.inventory_age_seconds
        when = "never reported" if age is None else f"reported {age:.0f} s ago"
        error = f": {state.host.inventory_error}" if state.host.inventory_error else ""
        limit = settings.BACKUP_INVENTORY_STALE_SECONDS
        return f"host {state.host.id}'s inventory is stale ({when}, stale after {limit} s){error}"
    return ""
