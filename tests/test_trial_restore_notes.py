"""A restore after `docker rm -f` of the app's container says the app is
not running again by itself (it said nothing: warnings were empty and the
operator found the app down with its data restored). Real stack (MariaDB
and an app container), real Docker, the real CLI."""

from __future__ import annotations

import contextlib

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from engine.inventory import AppInfo, ContainerInfo
from snapshots.models import Run, Snapshot
from snapshots.services.restore_notes import missing_services_warning
from tests.backup_helpers import backup_now
from tests.stacks import ComposeStack

pytestmark = pytest.mark.usefixtures("backup_dirs")


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_restore_after_the_app_container_was_removed_says_to_start_it(
    wordpress: ComposeStack,
) -> None:
    backup = backup_now(wordpress.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    wordpress.container("wordpress").remove(force=True)  # `docker rm -f`
    with contextlib.suppress(CommandError):
        call_command("backup", "restore", wordpress.project, backup.backup_id)
    run = Run.objects.filter(operation="restore", app_id=wordpress.project).latest("created_at")
    assert run.state == Run.State.COMPLETED, run.error
    [warning] = [w for w in run.result["warnings"] if "no container now" in w]
    assert f"wordpress ({wordpress.project}-wordpress-1)" in warning
    assert "mariadb" not in warning  # its container is there, started again
    assert "docker compose up -d" in warning and str(wordpress.working_dir) in warning


def _app(*services: str, one_off: str = "") -> AppInfo:
    containers = [
        ContainerInfo(id=s, name=f"app-{s}-1", service=s, image="i", state="running")
        for s in services
    ]
    if one_off:
        containers.append(ContainerInfo("x", "app-run-x", one_off, "i", "exited", one_off=True))
    return AppInfo("app", tuple(containers), (), (), (), working_dir=None)


def test_no_warning_when_every_service_has_a_container() -> None:
    backup = {"containers": [{"name": "app-db-1", "service": "db"}]}
    assert missing_services_warning(backup, _app("db")) is None
    assert missing_services_warning({}, _app()) is None  # an old backup.json without the list


def test_a_one_off_container_does_not_stand_for_its_service() -> None:
    backup = {"containers": [{"name": "app-web-1", "service": "web"}, "not an object"]}
    warning = missing_services_warning(backup, _app(one_off="web"))
    assert warning is not None and "web (app-web-1)" in warning
    assert "the app's compose directory" in warning
