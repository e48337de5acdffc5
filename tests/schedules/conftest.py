"""Fixtures of the schedules tests: an app on the real Docker engine (a
schedule is refused for an app the host does not have), schedules made
through the service, and an API client with a real key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from rest_framework.test import APIClient

from schedules import services
from schedules.models import Schedule
from snapshots.services.api_keys import create_api_key
from tests.fleet.helpers import report_app
from tests.images import APP_IMAGE
from tests.stacks import ComposeStack, ServiceSpec, random_project


@pytest.fixture
def host_app(host_app_stack: ComposeStack, db: None) -> ComposeStack:
    """HOST_APP_STACK in this host's stored inventory (a schedule is for an
    app a worker reported: the web process never asks Docker)."""
    report_app(host_app_stack.project)
    return host_app_stack


@pytest.fixture(scope="module")
def host_app_stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeStack]:
    """One busybox container with a small volume: quick to back up."""
    project = random_project("sched")
    command = ["sh", "-c", "echo hello > /data/hello.txt; trap 'exit 0' TERM; "
               "while :; do sleep 3600 & wait $!; done"]  # fmt: skip
    stack = ComposeStack(
        docker_client, project, tmp_path_factory.mktemp(project) / project,
        [ServiceSpec("web", APP_IMAGE, {}, {"data": "/data"}, command)],
    )  # fmt: skip
    try:
        stack.up()
        yield stack
    finally:
        stack.remove()


@pytest.fixture
def api(db: None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("schedules-tests")[1])
    return client


MakeSchedule = Callable[..., Schedule]


@pytest.fixture
def make_schedule(host_app: ComposeStack) -> MakeSchedule:
    def make(**values: Any) -> Schedule:
        return services.create_schedule({"app_id": host_app.project} | values)

    return make


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
