"""The apps on this Docker host that the dashboard's table does not know
yet (no backup, run or schedule): what a new operator must see first, with
a way to back them up. The table itself reads only the database; this is
the one Docker call of the page (two list calls), and a web process without
the engine (the fleet's web, issue 14) says so instead of failing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from engine.discovery import list_app_ids
from engine.docker_client import connect
from engine.errors import EngineError

# The dashboard must not wait long for an engine that does not answer.
DOCKER_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class HostApps:
    app_ids: list[str]
    error: str = ""  # why the host's apps are not known


def unprotected_apps(known: Iterable[str]) -> HostApps:
    """The host's app ids not in KNOWN."""
    try:
        client = connect(settings.DOCKER_HOST, timeout=DOCKER_TIMEOUT_SECONDS)
    except EngineError as exc:
        return HostApps([], str(exc))
    try:
        found = list_app_ids(client, settings.BACKUP_EXCLUDED_PROJECTS)
    except EngineError as exc:
        return HostApps([], str(exc))
    finally:
        client.close()
    taken = set(known)
    return HostApps([app_id for app_id in found if app_id not in taken])
