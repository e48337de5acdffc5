"""Shared fixtures: the real Docker engine, Compose-like stacks, and a real
Celery worker process on Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.images import ALL_IMAGES, require_image
from tests.stacks import (
    ComposeStack,
    odoo_stack,
    random_project,
    wait_for_mariadb,
    wait_for_postgres,
    wordpress_stack,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine (scripts/ensure_docker.sh starts one): {exc}")
    for image in ALL_IMAGES:
        require_image(client, image)
    yield client
    client.close()


StackFactory = Callable[[str], ComposeStack]


@pytest.fixture
def deploy_stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackFactory]:
    """deploy_stack("wordpress"|"odoo") -> a running stack whose database
    answers; everything it created is removed after the test."""
    created: list[ComposeStack] = []

    def deploy(kind: str) -> ComposeStack:
        project = random_project(kind)
        workdir = tmp_path_factory.mktemp(project) / project
        builders = {"wordpress": wordpress_stack, "odoo": odoo_stack}
        stack = builders[kind](docker_client, project, workdir)
        created.append(stack)
        stack.up()
        if kind == "wordpress":
            db = stack.services[0]
            wait_for_mariadb(stack.container("mariadb"), db.environment["MYSQL_ROOT_PASSWORD"])
        else:
            wait_for_postgres(stack.container("postgres"), project)
        return stack

    yield deploy
    for stack in created:
        stack.remove()


@pytest.fixture
def backup_dirs(settings, tmp_path: Path) -> None:
    """Backups and spool in the test's own tmp dir (modules that restore use
    it for every test: pytest.mark.usefixtures("backup_dirs"))."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"


@pytest.fixture
def wordpress(deploy_stack: StackFactory) -> ComposeStack:
    return deploy_stack("wordpress")


@pytest.fixture
def odoo(deploy_stack: StackFactory) -> ComposeStack:
    return deploy_stack("odoo")


# -- Processes on the test database -----------------------------------------


def subprocess_env() -> dict[str, str]:
    """Environment for a child process (worker, manage.py) that must use the
    test database pytest-django created, and the same data directory."""
    from django.conf import settings
    from django.db import connection

    env = os.environ.copy()
    db = connection.settings_dict
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["BACKUP_DATA_DIR"] = str(settings.DATA_DIR)
    env["BACKUP_ROOT"] = str(settings.BACKUP_ROOT)
    env["BACKUP_SPOOL_DIR"] = str(settings.BACKUP_SPOOL_DIR)
    env["BACKUP_HOST_ID"] = settings.BACKUP_HOST_ID
    env["BACKUP_LEASE_SECONDS"] = str(settings.BACKUP_LEASE_SECONDS)
    return env


def manage_py(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python manage.py ARGS` on the test database."""
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env or subprocess_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


# -- Celery ------------------------------------------------------------------


@pytest.fixture(scope="session")
def celery_queue() -> str:
    """A queue name of this test session only, so stray workers or messages of
    other runs on the same Redis never take our tasks."""
    return f"test-{os.getpid()}"


@pytest.fixture
def celery_worker(
    transactional_db: None, celery_queue: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery worker` process, on the test database and Redis.

    Function-scoped because it must see the test database that
    transactional_db creates and flushes."""
    env = subprocess_env()
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backup_project", "worker",
             "-Q", celery_queue, "--pool", "solo", "--loglevel", "INFO",
             "--hostname", f"{celery_queue}@%h"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_worker(celery_queue, proc, log_path)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_for_worker(
    queue: str, proc: subprocess.Popen[bytes], log_path: Path, node: str | None = None
) -> None:
    from backup_project.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"celery worker exited:\n{log_path.read_text()[-3000:]}")
        replies = app.control.ping(
            destination=[node or f"{queue}@{os.uname().nodename}"], timeout=1
        )
        if replies:
            return
    pytest.fail(f"celery worker did not answer:\n{log_path.read_text()[-3000:]}")
