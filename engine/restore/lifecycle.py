"""Stopping and starting an app's containers as Compose would: in the order
of their dependencies, concurrently within one rank, each container with
its own stop timeout, and a start checked by the container's healthcheck.

Order: Compose records each container's dependencies in the label
`com.docker.compose.depends_on` ("service:condition:restart,..."). A
container stops before the containers it depends on and starts after them;
on top of that, a database container (by its image, or named by the caller)
is taken as a dependency of every other container that is not already
ordered the other way, so an app without depends_on still loses its
database last and gets it back first. Containers of one rank are stopped
(started) together, one thread each: the threads make the Docker calls
only; results are gathered here, in the caller's thread, which raises or
reports.

Stop timeout: the container's own `Config.StopTimeout` (Compose sets it
from stop_grace_period), Docker's default of 10 s when it has none, never
one fixed figure for all (a fixed 30 s made one container that ignores
SIGTERM cost 30 s of downtime, each).

Start check: a container with a healthcheck is waited on until it reports
healthy, as long as its own healthcheck can take to decide (start period,
then retries x (interval + timeout)); unhealthy fails at once. One without a
healthcheck is watched for CRASH_WINDOW_SECONDS for an exit (an app that
cannot use its restored data usually exits at once); every container's
window runs at the same time. Failures name the container and its exit
code, never its logs (a database's log may echo the rows it choked on).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from docker.models.containers import Container

from engine.database_detection import detect_engine
from engine.errors import EngineError, describe

logger = logging.getLogger(__name__)

DEPENDS_ON_LABEL = "com.docker.compose.depends_on"
SERVICE_LABEL = "com.docker.compose.service"
SERVICE_HEALTHY = "service_healthy"
DOCKER_DEFAULT_STOP_TIMEOUT = 10  # what `docker stop` waits for a container that sets none
# Long enough to catch a crash at startup, short enough to be no real
# downtime: the windows of all containers run at the same time.
CRASH_WINDOW_SECONDS = 2.0
POLL_SECONDS = 0.25
# Docker's defaults for a healthcheck field left at 0 (docker run --help).
HEALTH_INTERVAL_DEFAULT = 30.0
HEALTH_TIMEOUT_DEFAULT = 30.0
HEALTH_RETRIES_DEFAULT = 3
HEALTH_SLACK_SECONDS = 5.0  # the engine's own scheduling of the probes
MAX_THREADS = 16

T = TypeVar("T")


@dataclass(frozen=True)
class StartResult:
    """One container's start: how long from its start call until it was
    up (healthy, or through its crash window), or why it failed."""

    container: Container
    seconds: float | None = None
    healthcheck: bool = False
    error: BaseException | None = None

    @property
    def name(self) -> str:
        return str(self.container.name)


class StopFailed(EngineError):
    """Containers could not be stopped (the engine refused or did not answer)."""


def stop_timeout(container: Container) -> int:
    """The seconds Docker waits after the stop signal before it kills CONTAINER."""
    value = (container.attrs.get("Config") or {}).get("StopTimeout")
    return DOCKER_DEFAULT_STOP_TIMEOUT if value is None else int(value)


def stop_one(container: Container) -> None:
    """Stop CONTAINER with its own timeout, a paused one included (unpaused
    first: a frozen process cannot take the stop signal)."""
    container.reload()
    if container.status == "paused":
        container.unpause()
    container.stop(timeout=stop_timeout(container))


def stop_in_order(containers: Sequence[Container], databases: Collection[str] = ()) -> None:
    """Stop CONTAINERS, dependents first, each rank concurrently. A rank
    with a failure ends it: StopFailed names every container of that rank
    that could not be stopped (the ranks after it are left running: the
    caller brings the stopped ones back). DATABASES: ids of containers to
    take for databases whatever their image."""
    with _pool(len(containers)) as pool:
        for rank in reversed(start_ranks(containers, databases)):
            results = _gather([(c, pool.submit(stop_one, c)) for c in rank])
            failed = [(c, exc) for c, exc in results if exc is not None]
            if failed:
                why = [f"could not stop container {c.name}: {describe(e)}" for c, e in failed]
                raise StopFailed("; ".join(why))


def start_in_order(
    containers: Sequence[Container],
    databases: Collection[str] = (),
    check: Collection[str] | None = None,
) -> list[StartResult]:
    """Start CONTAINERS, dependencies first, each rank concurrently, every
    one tried whatever happened to the others. Those whose ids are in CHECK
    (None: none) are checked to stay up, all at the same time; a dependent
    whose depends_on says service_healthy starts once that check of its
    dependency has ended. Returns one result per container, in the order of
    CONTAINERS; nothing is raised for a container's failure."""
    checked = set(check or ())
    gates = _healthy_gates(containers)
    results: dict[str, StartResult] = {}
    # Two threads per container at most: its start, then its check.
    with _pool(2 * len(containers)) as pool:
        watches: dict[str, Future[StartResult]] = {}
        for rank in start_ranks(containers, databases):
            for dependency in {d for c in rank for d in gates.get(c.id, ())}:
                if dependency in watches:  # its check ends, whatever it says
                    _gather([(dependency, watches[dependency])])
            starts = _gather([(c, pool.submit(_start_one, c)) for c in rank])
            for container, outcome in starts:
                if isinstance(outcome, BaseException):
                    results[container.id] = StartResult(container, error=outcome)
                elif container.id in checked:
                    watches[container.id] = pool.submit(_watch, container, outcome, pool.cancel)
                else:
                    results[container.id] = StartResult(container, time.monotonic() - outcome)
        for container_id, outcome in _gather(list(watches.items())):
            if isinstance(outcome, BaseException):  # a Docker call of the check failed
                container = next(c for c in containers if c.id == container_id)
                results[container_id] = StartResult(container, error=outcome)
            else:
                results[container_id] = outcome
    return [results[c.id] for c in containers]


def raise_for_failures(results: Sequence[StartResult]) -> None:
    """Log how long each container took to come up; raise an EngineError
    naming every one that failed (its exit code, never its logs)."""
    for result in results:
        if result.seconds is not None:
            kind = "healthy" if result.healthcheck else "up"
            logger.info("container %s %s %.1f s after its start", result.name, kind, result.seconds)
    failed = [_start_error(result) for result in results if result.error is not None]
    if failed:
        raise EngineError("; ".join(failed))


def _start_error(result: StartResult) -> str:
    if isinstance(result.error, EngineError):  # the check's own words: name and exit code
        return str(result.error)
    return f"could not start container {result.name}: {describe(result.error)}"


def start_ranks(
    containers: Sequence[Container], databases: Collection[str] = ()
) -> list[list[Container]]:
    """CONTAINERS in ranks, the first to start (last to stop) first: each
    container is in a later rank than every container it depends on."""
    depends = _dependencies(containers, set(databases))
    placed: set[int] = set()
    ranks: list[list[Container]] = []
    while len(placed) < len(containers):
        ready = [i for i in range(len(containers)) if i not in placed and depends[i] <= placed]
        if not ready:  # a cycle (hand-made labels: Compose refuses them): one rank
            ready = [i for i in range(len(containers)) if i not in placed]
        ranks.append([containers[i] for i in ready])
        placed.update(ready)
    return ranks


def is_database(container: Container) -> bool:
    """A database server, by the image it was created from (as discovery
    decides it, engine.database_detection)."""
    image = (container.attrs.get("Config") or {}).get("Image") or ""
    return detect_engine(image) is not None


def depends_on(container: Container) -> dict[str, str]:
    """Services CONTAINER depends on, with the condition Compose waits for."""
    found: dict[str, str] = {}
    for item in (container.labels.get(DEPENDS_ON_LABEL) or "").split(","):
        service, _, rest = item.strip().partition(":")
        if service:
            found[service] = rest.split(":", 1)[0]
    return found


def _dependencies(containers: Sequence[Container], databases: set[str]) -> list[set[int]]:
    """For each container (by index), the indexes of those it depends on."""
    by_service: dict[str, set[int]] = {}
    for i, container in enumerate(containers):
        by_service.setdefault(container.labels.get(SERVICE_LABEL, ""), set()).add(i)
    depends: list[set[int]] = []
    for i, container in enumerate(containers):
        wanted = set().union(*(by_service.get(s, set()) for s in depends_on(container)))
        depends.append(wanted - {i})
    dbs = [i for i, c in enumerate(containers) if c.id in databases or is_database(c)]
    for i in range(len(containers)):
        for db in dbs:
            # Checked against the edges so far, so no edge makes a cycle.
            if i not in dbs and not _reaches(depends, db, i):
                depends[i].add(db)
    return depends


def _reaches(depends: list[set[int]], start: int, target: int) -> bool:
    """Does START depend on TARGET, directly or not?"""
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(depends[node])
    return False


def _healthy_gates(containers: Sequence[Container]) -> dict[str, set[str]]:
    """For each container, the ids of those it must see healthy before it starts."""
    ids_by_service: dict[str, set[str]] = {}
    for container in containers:
        ids_by_service.setdefault(container.labels.get(SERVICE_LABEL, ""), set()).add(container.id)
    gates: dict[str, set[str]] = {}
    for container in containers:
        for service, condition in depends_on(container).items():
            if condition == SERVICE_HEALTHY:
                gates.setdefault(container.id, set()).update(ids_by_service.get(service, ()))
    return gates


def _start_one(container: Container) -> float:
    """Start CONTAINER (one that runs already answers 304: left as it is);
    returns the monotonic time it was started at."""
    started = time.monotonic()
    container.start()
    return started


def _watch(container: Container, started: float, cancel: threading.Event) -> StartResult:
    """Wait until CONTAINER is up on its restored data (see the module's doc)."""
    config = (container.attrs.get("Config") or {}).get("Healthcheck") or {}
    has_check = bool(config.get("Test")) and config["Test"][0] != "NONE"
    deadline = started + (_health_budget(config) if has_check else CRASH_WINDOW_SECONDS)
    while not cancel.is_set():
        container.reload()
        state = container.attrs.get("State") or {}
        if container.status != "running":
            return StartResult(container, healthcheck=has_check, error=_exited(container, state))
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy":
            return StartResult(container, time.monotonic() - started, healthcheck=True)
        if health == "unhealthy":
            return StartResult(container, healthcheck=True, error=_unhealthy(container))
        now = time.monotonic()
        if now >= deadline:
            if health is None:  # no healthcheck (or the engine reports none): it stayed up
                return StartResult(container, now - started)
            error = EngineError(
                f"container {container.name} is still {health} {now - started:.0f} s after its "
                "start, longer than its healthcheck takes to decide; see "
                f"`docker inspect {container.name}`"
            )
            return StartResult(container, healthcheck=True, error=error)
        time.sleep(min(POLL_SECONDS, max(deadline - now, 0.01)))
    return StartResult(container, error=EngineError(f"check of {container.name} abandoned"))


def _health_budget(config: dict[str, Any]) -> float:
    """How long a healthcheck can take to call a container unhealthy: its
    start period, then RETRIES failed probes, each after an interval and
    taking up to its timeout (fields of 0 take Docker's defaults)."""

    def seconds(key: str, default: float) -> float:
        value = config.get(key) or 0
        return value / 1e9 if value else default

    retries = config.get("Retries") or HEALTH_RETRIES_DEFAULT
    interval = seconds("Interval", HEALTH_INTERVAL_DEFAULT)
    timeout = seconds("Timeout", HEALTH_TIMEOUT_DEFAULT)
    return seconds("StartPeriod", 0.0) + retries * (interval + timeout) + HEALTH_SLACK_SECONDS


def _exited(container: Container, state: dict[str, Any]) -> EngineError:
    # Its exit code only: a container's log (a database's above all) may
    # echo the rows it choked on.
    return EngineError(
        f"container {container.name} did not stay running (exit code {state.get('ExitCode')}); "
        f"see `docker logs {container.name}`"
    )


def _unhealthy(container: Container) -> EngineError:
    # Not the probe's output either: it is the app's own text.
    return EngineError(
        f"container {container.name} is unhealthy after the restore; "
        f"see `docker inspect {container.name}`"
    )


class _Pool(ThreadPoolExecutor):
    cancel: threading.Event


@contextmanager
def _pool(size: int) -> Iterator[_Pool]:
    """Threads for Docker calls. When the caller's thread is interrupted (a
    signal raises Terminated there) the checks are abandoned and the calls
    under way are waited for, so none races the rollback that follows."""
    pool = _Pool(max_workers=max(1, min(size, MAX_THREADS)), thread_name_prefix="lifecycle")
    pool.cancel = threading.Event()
    try:
        yield pool
    except BaseException:
        pool.cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _gather(pending: Sequence[tuple[T, Future[Any]]]) -> list[tuple[T, Any]]:
    """Wait for every future of PENDING; (key, its result or its exception)."""
    gathered: list[tuple[T, Any]] = []
    for key, future in pending:
        try:
            gathered.append((key, future.result()))
        except Exception as exc:  # the container's failure, reported by the caller
            gathered.append((key, exc))
    return gathered
