"""Stopping and starting an app around a restore (issue 15, point 2): the
order of Compose's dependencies (the database stops after its dependents
and starts before them), each container's own stop timeout, one rank
stopped at once, and a start that waits on the container's healthcheck.

Real containers on the real engine, built as Compose would (tests/stacks.py);
the order is read from the engine's own State.FinishedAt / StartedAt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from engine.inventory import ContainerInfo
from engine.progress import no_progress
from engine.restore.orchestrate import _start_and_check, _stop
from snapshots.models import Run, Snapshot
from tests.backup_helpers import backup_now, restore_now
from tests.images import APP_IMAGE, MARIADB_IMAGE
from tests.small_app import RUN_UNTIL_STOPPED
from tests.stacks import ComposeStack, ServiceSpec, random_project

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Ends on SIGTERM, a second after it (an app finishing its requests).
SLOW_TO_STOP = "trap 'sleep 1; exit 0' TERM; while :; do sleep 3600 & wait $!; done"
# Ignores SIGTERM: only the engine's SIGKILL, after the stop timeout, ends it.
IGNORES_TERM = "trap '' TERM; while :; do sleep 1; done"
SECOND = 1_000_000_000  # healthcheck durations are in nanoseconds
ON_DB = {"db": "service_started"}


def _sh(script: str) -> list[str]:
    return ["sh", "-c", script]


@pytest.fixture
def stack_of(
    docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[Callable[..., ComposeStack]]:
    """stack_of(*services) -> a running Compose-like stack of SERVICES,
    removed after the test."""
    stacks: list[ComposeStack] = []

    def deploy(*services: ServiceSpec) -> ComposeStack:
        project = random_project("lifecycle")
        stack = ComposeStack(docker_client, project, tmp_path / project, list(services))
        stacks.append(stack)
        stack.up()
        return stack

    yield deploy
    for stack in stacks:
        stack.remove()


def _state(stack: ComposeStack, service: str) -> dict[str, Any]:
    container = stack.container(service)
    container.reload()
    return container.attrs["State"]


def _at(stack: ComposeStack, service: str, key: str) -> datetime:
    # The engine's RFC 3339 time with nanoseconds: microseconds are enough.
    stamp = _state(stack, service)[key]
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}")


def _infos(stack: ComposeStack, *services: str) -> list[ContainerInfo]:
    return [
        ContainerInfo(stack.container(s).id, stack.container(s).name, s, "", "running")
        for s in services
    ]


def _ids(stack: ComposeStack, *services: str) -> list[str]:
    return [stack.container(s).id for s in services]


def _timed_stop(client: docker.DockerClient, ids: list[str]) -> float:
    began = time.monotonic()
    _stop(client, ids, no_progress)
    return time.monotonic() - began


def test_the_database_stops_after_its_dependents_and_starts_before_them(
    stack_of: Callable[..., ComposeStack], docker_client: docker.DockerClient
) -> None:
    """depends_on as Compose labels it: web and worker depend on db. They
    take a second to stop, db stops at once: stopped all together, db would
    be down first. Given db first, the old sequential stop stopped it first."""
    stack = stack_of(
        ServiceSpec("db", APP_IMAGE, command=_sh(RUN_UNTIL_STOPPED)),
        ServiceSpec("web", APP_IMAGE, command=_sh(SLOW_TO_STOP), depends_on=ON_DB),
        ServiceSpec("worker", APP_IMAGE, command=_sh(SLOW_TO_STOP), depends_on=ON_DB),
    )
    took = _timed_stop(docker_client, _ids(stack, "db", "web", "worker"))
    db_down = _at(stack, "db", "FinishedAt")
    assert db_down > _at(stack, "web", "FinishedAt")
    assert db_down > _at(stack, "worker", "FinishedAt")
    assert took < 4, f"web and worker stop together (about 1 s), then db: took {took:.1f} s"
    # Start: given web first, db still comes up first.
    _start_and_check(docker_client, _infos(stack, "web", "worker", "db"))
    db_up = _at(stack, "db", "StartedAt")
    assert db_up < _at(stack, "web", "StartedAt")
    assert db_up < _at(stack, "worker", "StartedAt")
    assert {_state(stack, s)["Status"] for s in ("db", "web", "worker")} == {"running"}


def test_without_depends_on_a_database_by_its_image_stops_last(
    stack_of: Callable[..., ComposeStack], docker_client: docker.DockerClient
) -> None:
    """No depends_on label: the container of a database image (its server
    replaced by a shell: the image is what detection reads) is taken for a
    dependency of the others, as discovery would take it for a database."""
    stack = stack_of(
        ServiceSpec("mariadb", MARIADB_IMAGE, command=_sh(RUN_UNTIL_STOPPED)),
        ServiceSpec("app", APP_IMAGE, command=_sh(SLOW_TO_STOP)),
    )
    _timed_stop(docker_client, _ids(stack, "mariadb", "app"))
    assert _at(stack, "mariadb", "FinishedAt") > _at(stack, "app", "FinishedAt")
    _start_and_check(docker_client, _infos(stack, "app", "mariadb"))
    assert _at(stack, "mariadb", "StartedAt") < _at(stack, "app", "StartedAt")


def test_a_container_that_ignores_sigterm_is_stopped_after_its_own_stop_timeout(
    stack_of: Callable[..., ComposeStack], docker_client: docker.DockerClient
) -> None:
    """stop_grace_period 2s (Config.StopTimeout=2): killed after 2 s, not 30."""
    stack = stack_of(
        ServiceSpec("stubborn", APP_IMAGE, command=_sh(IGNORES_TERM), stop_grace_period=2)
    )
    assert stack.container("stubborn").attrs["Config"]["StopTimeout"] == 2
    took = _timed_stop(docker_client, _ids(stack, "stubborn"))
    assert 1.5 < took < 6, f"took {took:.1f} s"
    assert _state(stack, "stubborn")["ExitCode"] == 137  # SIGKILL: it did ignore SIGTERM


def test_without_a_stop_timeout_dockers_default_of_10_s_applies(
    stack_of: Callable[..., ComposeStack], docker_client: docker.DockerClient
) -> None:
    stack = stack_of(ServiceSpec("stubborn", APP_IMAGE, command=_sh(IGNORES_TERM)))
    assert stack.container("stubborn").attrs["Config"].get("StopTimeout") is None
    took = _timed_stop(docker_client, _ids(stack, "stubborn"))
    assert 9 < took < 20, f"took {took:.1f} s"


def test_containers_of_one_rank_stop_at_the_same_time(
    stack_of: Callable[..., ComposeStack], docker_client: docker.DockerClient
) -> None:
    """Two containers ignoring SIGTERM, StopTimeout 3 each: about 3 s in all, not 6."""
    stack = stack_of(
        ServiceSpec("one", APP_IMAGE, command=_sh(IGNORES_TERM), stop_grace_period=3),
        ServiceSpec("two", APP_IMAGE, command=_sh(IGNORES_TERM), stop_grace_period=3),
    )
    took = _timed_stop(docker_client, _ids(stack, "one", "two"))
    assert took < 6, f"took {took:.1f} s"
    assert {_state(stack, s)["ExitCode"] for s in ("one", "two")} == {137}


def _healthy_after(seconds: int) -> str:
    # The marker is removed first: a container's /tmp survives its restart.
    return f"rm -f /tmp/healthy; (sleep {seconds}; touch /tmp/healthy) & {RUN_UNTIL_STOPPED}"


HEALTH_FILE = {
    "test": ["CMD", "test", "-e", "/tmp/healthy"],
    "interval": SECOND // 2,
    "timeout": 2 * SECOND,
    "retries": 30,
}


def test_the_start_waits_for_a_healthcheck_to_say_healthy(
    stack_of: Callable[..., ComposeStack],
    docker_client: docker.DockerClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A container healthy only ~4 s after its start is waited for; one
    without a healthcheck is watched for its crash window meanwhile; the
    time each took is reported."""
    stack = stack_of(
        ServiceSpec("slow", APP_IMAGE, command=_sh(_healthy_after(4)), healthcheck=HEALTH_FILE),
        ServiceSpec("plain", APP_IMAGE, command=_sh(RUN_UNTIL_STOPPED)),
    )
    _stop(docker_client, _ids(stack, "slow", "plain"), no_progress)
    caplog.set_level(logging.INFO, logger="engine.restore.lifecycle")
    began = time.monotonic()
    _start_and_check(docker_client, _infos(stack, "slow", "plain"))
    took = time.monotonic() - began
    assert _state(stack, "slow")["Health"]["Status"] == "healthy"
    assert took >= 3.5
    reports = {r.args[0]: r.args for r in caplog.records if "after its start" in r.getMessage()}
    slow, plain = stack.container("slow").name, stack.container("plain").name
    assert reports[slow][1] == "healthy" and reports[slow][2] >= 3.5, reports
    assert reports[plain][1] == "up" and reports[plain][2] < 3.5, reports


def test_a_container_that_exits_at_start_is_named_with_its_exit_code(
    stack_of: Callable[..., ComposeStack], docker_client: docker.DockerClient
) -> None:
    stack = stack_of(
        ServiceSpec("ok", APP_IMAGE, command=_sh(RUN_UNTIL_STOPPED)),
        ServiceSpec("crashy", APP_IMAGE, command=_sh(
            "if [ -e /tmp/started ]; then echo 'row 42: secret' >&2; exit 3; fi; "
            f"touch /tmp/started; {RUN_UNTIL_STOPPED}")),
    )  # fmt: skip
    _stop(docker_client, _ids(stack, "ok", "crashy"), no_progress)
    with pytest.raises(Exception, match=r"did not stay running \(exit code 3\)") as failed:
        _start_and_check(docker_client, _infos(stack, "ok", "crashy"))
    assert stack.container("crashy").name in str(failed.value)
    assert "secret" not in str(failed.value)  # never its logs


@pytest.mark.django_db(transaction=True)
def test_a_container_unhealthy_on_the_restored_data_fails_the_restore_and_is_rolled_back(
    stack_of: Callable[..., ComposeStack], docker_client: docker.DockerClient, backup_dirs: None
) -> None:
    """The app's healthcheck fails on data holding a `broken` file (as an
    app's own check fails on data it cannot use): the backup holds one, the
    live data not. The restore fails naming the container as unhealthy, the
    old data is back and the app runs (and turns healthy) on it."""
    check = {"test": ["CMD", "sh", "-c", "test ! -e /data/broken"], "interval": SECOND // 2,
             "timeout": 2 * SECOND, "retries": 2}  # fmt: skip
    stack = stack_of(
        ServiceSpec("web", APP_IMAGE, volumes={"data": "/data"},
                    command=_sh(RUN_UNTIL_STOPPED), healthcheck=check),
    )  # fmt: skip
    root = Path(docker_client.volumes.get(stack.volume("data")).attrs["Mountpoint"])
    (root / "broken").write_text("")
    (root / "marker.txt").write_text("in the backup")
    backup = backup_now(stack.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    (root / "broken").unlink()
    (root / "marker.txt").write_text("live")
    run = restore_now(stack.project, backup.backup_id, "--no-safety-backup")
    assert run.state == Run.State.FAILED
    assert f"container {stack.container('web').name} is unhealthy" in run.error, run.error
    assert f"volume {stack.volume('data')}" in run.result["rolled_back"], run.result
    assert (root / "marker.txt").read_text() == "live" and not (root / "broken").exists()
    deadline = time.monotonic() + 30
    while _state(stack, "web").get("Health", {}).get("Status") != "healthy":
        assert time.monotonic() < deadline, _state(stack, "web")
        time.sleep(0.3)


@pytest.mark.django_db(transaction=True)
def test_a_stop_mode_backup_stops_with_each_containers_own_timeout(
    stack_of: Callable[..., ComposeStack], backup_dirs: None
) -> None:
    """consistency=stop: a container ignoring SIGTERM with stop_grace_period
    2s costs about 2 s (it was 30 s), and is started again."""
    stack = stack_of(
        ServiceSpec("web", APP_IMAGE, volumes={"data": "/data"}, command=_sh(IGNORES_TERM),
                    stop_grace_period=2),
    )  # fmt: skip
    began = time.monotonic()
    backup = backup_now(stack.project, "--consistency", "stop")
    took = time.monotonic() - began
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    assert took < 20, f"took {took:.1f} s"
    assert _state(stack, "web")["Status"] == "running"
    assert _state(stack, "web")["ExitCode"] == 0  # started again since its SIGKILL
