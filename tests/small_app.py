"""A small Compose-like app for fault tests: busybox containers sharing one
files volume, quick to stop, with random data of a chosen size."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import docker
import docker.errors

from tests.images import APP_IMAGE
from tests.stacks import ComposeStack, ServiceSpec, random_project

# `sleep` as PID 1 ignores SIGTERM, so `docker stop` would wait out its whole
# timeout (30 s in the engine); a shell with a trap ends at once.
RUN_UNTIL_STOPPED = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"


def deploy_small_app(
    client: docker.DockerClient, workdir: Path, services: tuple[str, ...] = ("web",),
    data_mb: int = 0,
) -> ComposeStack:  # fmt: skip
    """Containers SERVICES, each mounting the volume `data` at /data, which
    holds marker.txt ("before") and DATA_MB MiB of random data."""
    project = random_project("faults")
    specs = [
        ServiceSpec(name, APP_IMAGE, {}, {"data": "/data"}, ["sh", "-c", RUN_UNTIL_STOPPED])
        for name in services
    ]
    stack = ComposeStack(client, project, workdir / project, specs)
    stack.up()
    root = data_dir(client, stack)
    (root / "marker.txt").write_text("before")
    for i in range(data_mb // 4):
        (root / f"blob{i:03}.bin").write_bytes(os.urandom(4 << 20))
    return stack


def data_dir(client: docker.DockerClient, stack: ComposeStack) -> Path:
    return Path(client.volumes.get(stack.volume("data")).attrs["Mountpoint"])


def statuses(stack: ComposeStack) -> dict[str, str]:
    result = {}
    for name, container in stack.containers.items():
        container.reload()
        result[name] = container.status
    return result


def remove_small_app(stack: ComposeStack) -> None:
    for container in stack.containers.values():
        with contextlib.suppress(docker.errors.NotFound):
            container.reload()
            if container.status == "paused":
                container.unpause()
    stack.remove()
