"""The apps on this Docker host that the dashboard's table does not know
yet (no backup, run or schedule): what a new operator must see first, with
a way to back them up. The table itself reads only the database; this is
the one Docker call of the page (a ping and two list calls), made in a
thread while the database is read, and a web process without the engine
(the fleet's web, issue 14) says so instead of failing."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from django.conf import settings
from docker.errors import DockerException
from requests.exceptions import RequestException

from engine.discovery import list_app_ids
from engine.docker_client import connect
from engine.errors import EngineError

# The dashboard must not wait long for an engine that does not answer.
DOCKER_TIMEOUT_SECONDS = 5
T = TypeVar("T")


@dataclass(frozen=True)
class HostApps:
    app_ids: list[str]
    error: str = ""  # why the host's apps are not known

    def without(self, known: Iterable[str]) -> HostApps:
        taken = set(known)
        return replace(self, app_ids=[app_id for app_id in self.app_ids if app_id not in taken])


def host_app_ids() -> HostApps:
    """Every app id on this Docker host."""
    try:
        client = connect(settings.DOCKER_HOST, timeout=DOCKER_TIMEOUT_SECONDS)
    except EngineError as exc:
        return HostApps([], str(exc))
    try:
        return HostApps(list_app_ids(client, settings.BACKUP_EXCLUDED_PROJECTS))
    except EngineError as exc:
        return HostApps([], str(exc))
    except (DockerException, RequestException) as exc:  # a slow engine: a read timeout
        return HostApps([], f"the Docker engine did not answer in time ({type(exc).__name__})")
    finally:
        client.close()


def alongside(work: Callable[[], T]) -> tuple[T, HostApps]:
    """WORK's result, and the host's app ids listed meanwhile in a thread
    (with this request's log context): the page waits for the slower one,
    not for both one after the other."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        listing: Future[HostApps] = pool.submit(contextvars.copy_context().run, host_app_ids)
        result = work()
        return result, listing.result()
