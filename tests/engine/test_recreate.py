"""Recreating an app's containers from its containers.json, on the local
engine: a backup records them (archive only, its environment secret), the
record gives back the same containers, volumes and network (created, not
started); an image missing here is refused before anything is made; a
failure mid-way leaves nothing made."""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from engine.archive.source import open_tar_source
from engine.backup import BackupOptions, create_backup
from engine.discovery import get_app
from engine.recreate.create import RecreateRefused, recreate_app
from engine.recreate.record import app_record, read_app_record
from engine.restore.plan import read_backup_json
from engine.verify import verify_backup
from storage.local import LocalStorage
from tests.images import APP_IMAGE
from tests.stacks import (
    ComposeStack,
    ServiceSpec,
    project_leftovers,
    random_project,
    remove_project,
)

pytestmark = [pytest.mark.docker]

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]


@pytest.fixture
def stack(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    project = random_project("recreate")
    secret = f"pw-{secrets.token_hex(8)}"
    stack = ComposeStack(
        docker_client, project, tmp_path / project,
        [ServiceSpec("web", APP_IMAGE, {"DB_PASSWORD": secret}, {"data": "/data"}, SLEEP,
                     stop_grace_period=3),
         ServiceSpec("worker", APP_IMAGE, {}, {"data": "/srv/data", "cache": "/cache"}, SLEEP,
                     depends_on={"web": "service_started"})],
    )  # fmt: skip
    try:
        stack.up()
        yield stack
    finally:
        stack.remove()
        remove_project(docker_client, project)


def _record_then_uninstall(client: docker.DockerClient, stack: ComposeStack) -> dict[str, Any]:
    record = app_record(client, get_app(client, stack.project))
    stack.remove()
    assert project_leftovers(client, stack.project) == []
    return record


def test_the_record_gives_back_the_same_containers_volumes_and_network(
    docker_client: docker.DockerClient, stack: ComposeStack
) -> None:
    before = {s: docker_client.api.inspect_container(c.id) for s, c in stack.containers.items()}
    volume_labels = {n: docker_client.volumes.get(n).attrs["Labels"] for n in stack.volume_names}
    record = _record_then_uninstall(docker_client, stack)

    made = recreate_app(docker_client, stack.project, record)
    try:
        assert sorted(made.container_names) == sorted(c["Name"][1:] for c in before.values())
        assert made.networks == [stack.network_name]
        assert sorted(made.volumes) == sorted(stack.volume_names)
        app = get_app(docker_client, stack.project)
        assert {c.service: c.state for c in app.containers} == {
            "web": "created",
            "worker": "created",
        }
        for container in app.containers:
            now = docker_client.api.inspect_container(container.id)
            old = before[container.service]
            assert now["Id"] != old["Id"] and now["Name"] == old["Name"]
            for key in ("Image", "Cmd", "Env", "Labels", "StopTimeout", "User", "WorkingDir"):
                assert now["Config"].get(key) == old["Config"].get(key), key
            assert now["Image"] == old["Image"]  # the same image id
            assert now["HostConfig"]["RestartPolicy"] == old["HostConfig"]["RestartPolicy"]
            mounts = lambda attrs: sorted(  # noqa: E731
                (m["Type"], m.get("Name"), m["Destination"], m["RW"]) for m in attrs["Mounts"]
            )
            assert mounts(now) == mounts(old)
            network = now["NetworkSettings"]["Networks"][stack.network_name]
            assert container.service in network["Aliases"]
        for name, labels in volume_labels.items():
            assert docker_client.volumes.get(name).attrs["Labels"] == labels
        labels = docker_client.networks.get(stack.network_name).attrs["Labels"]
        assert labels["com.docker.compose.network"] == "default"
        # They start as they are (the restore's job); the service resolves by its alias.
        web = docker_client.containers.get(f"{stack.project}-web-1")
        worker = docker_client.containers.get(f"{stack.project}-worker-1")
        web.start()
        worker.start()
        assert worker.exec_run(["ping", "-c1", "-W2", "web"]).exit_code == 0
    finally:
        left = made.remove(docker_client)
    assert left == []
    assert project_leftovers(docker_client, stack.project) == []


def test_a_missing_image_is_refused_before_anything_is_made(
    docker_client: docker.DockerClient, stack: ComposeStack
) -> None:
    record = _record_then_uninstall(docker_client, stack)
    absent = f"localtest/absent-{secrets.token_hex(3)}:1"
    record["containers"][1]["image"] = absent
    with pytest.raises(RecreateRefused) as refused:
        recreate_app(docker_client, stack.project, record)
    message = str(refused.value)
    assert absent in message and "never pulled" in message and "nothing was created" in message
    assert project_leftovers(docker_client, stack.project) == []
    with pytest.raises(docker.errors.ImageNotFound):  # and nothing was pulled
        docker_client.images.get(absent)


def test_a_failure_mid_way_removes_everything_made(
    docker_client: docker.DockerClient, stack: ComposeStack, tmp_path: Path
) -> None:
    record = _record_then_uninstall(docker_client, stack)
    missing = str(tmp_path / "not-on-this-host" / "certs")
    # The second container's create fails: the network, the volumes and the
    # first container were made by then.
    worker = next(c for c in record["containers"] if c["service"] == "worker")
    worker["mounts"].append(
        {"type": "bind", "source": missing, "target": "/certs", "read_only": True}
    )
    secret = next(
        e for c in record["containers"] for e in c["config"]["Env"] if e.startswith("DB_PASS")
    )
    with pytest.raises(RecreateRefused) as refused:
        recreate_app(docker_client, stack.project, record)
    message = str(refused.value)
    assert missing in message and "missing on this host" in message
    assert secret.partition("=")[2] not in message
    assert project_leftovers(docker_client, stack.project) == []
    assert not Path(missing).exists()  # refused, not made empty


def test_a_network_not_the_apps_own_must_exist(
    docker_client: docker.DockerClient, stack: ComposeStack
) -> None:
    record = _record_then_uninstall(docker_client, stack)
    shared = copy.deepcopy(record["networks"][0])
    shared["name"], shared["labels"] = f"proxy-{secrets.token_hex(3)}", {}
    record["networks"].append(shared)
    record["containers"][0]["networks"].append({"name": shared["name"], "aliases": []})
    with pytest.raises(RecreateRefused, match=f"network.*{shared['name']}.*missing here"):
        recreate_app(docker_client, stack.project, record)
    assert project_leftovers(docker_client, stack.project) == []


def test_a_backup_writes_the_record_in_the_archive_only(
    docker_client: docker.DockerClient, stack: ComposeStack, tmp_path: Path
) -> None:
    secret = stack.services[0].environment["DB_PASSWORD"]
    storage = LocalStorage(tmp_path / "store")
    result = create_backup(
        client=docker_client, app=get_app(docker_client, stack.project),
        backup_id="backup_20261203_120000_a1b2c3", storage=storage,
        options=BackupOptions(include_config=False), spool_dir=tmp_path / "spool",
    )  # fmt: skip

    def open_tar() -> Any:
        return open_tar_source(storage, result.storage_key, compression="zstd", encrypted=False)

    record = read_app_record(open_tar)
    assert record is not None
    web = next(c for c in record["containers"] if c["service"] == "web")
    assert f"DB_PASSWORD={secret}" in web["config"]["Env"]
    assert web["image"] == APP_IMAGE and web["image_id"].startswith("sha256:")
    # Not in backup.json, nor anything the snapshot row is made of.
    assert secret not in json.dumps(read_backup_json(open_tar))
    assert secret not in json.dumps(result.contents) + json.dumps(result.warnings)
    verified = verify_backup(storage, result.storage_key, result.sha256, deep=True)
    assert verified.valid, verified.errors
    assert secret not in json.dumps(verified.to_json())
