"""Deploy realistic app stacks as Docker Compose would, for tests.

Containers, volumes and networks carry exactly the labels `docker compose`
(v2) sets, a compose file and `.env` are written to the project's working
directory, and names follow Compose: `<project>_<volume>`,
`<project>-<service>-1`, `<project>_default`. Every object created is
recorded, and `ComposeStack.remove()` deletes only those, so the tests never
touch containers or volumes they did not create.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container, _create_container_args

from engine.discovery import PROJECT_LABEL
from tests.images import APP_IMAGE, MARIADB_IMAGE, POSTGRES_IMAGE, require_image

COMPOSE_VERSION = "2.29.7"
# Marks objects made by this test suite, so a person can find leftovers of a
# killed run: docker ps -a --filter label=org.backup-service.test=1
TEST_LABEL = "org.backup-service.test"


@dataclass
class ServiceSpec:
    name: str
    image: str
    environment: dict[str, str] = field(default_factory=dict)
    # volume key (without project prefix) -> mount path in the container
    volumes: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None
    # service -> condition (service_started, service_healthy), as in Compose's depends_on
    depends_on: dict[str, str] = field(default_factory=dict)
    stop_grace_period: int | None = None  # seconds; Compose sets the container's StopTimeout
    # docker-py's healthcheck dict: test, interval/timeout/start_period (ns), retries
    healthcheck: dict[str, object] | None = None


@dataclass
class ComposeStack:
    client: docker.DockerClient
    project: str
    working_dir: Path
    services: list[ServiceSpec]
    containers: dict[str, Container] = field(default_factory=dict)
    volume_names: list[str] = field(default_factory=list)
    network_name: str = ""

    @property
    def config_file(self) -> Path:
        return self.working_dir / "docker-compose.yml"

    def volume(self, key: str) -> str:
        """Docker name of the stack's volume KEY."""
        return f"{self.project}_{key}"

    def container(self, service: str) -> Container:
        return self.containers[service]

    def exec(self, service: str, cmd: list[str], environment: dict[str, str] | None = None) -> str:
        """Run CMD in SERVICE's container; return stdout; raise on a non-zero exit."""
        result = self.container(service).exec_run(cmd, environment=environment, demux=True)
        out, err = result.output
        if result.exit_code != 0:
            raise AssertionError(
                f"{cmd[0]} in {service} exited {result.exit_code}: {(err or b'').decode()[-2000:]}"
            )
        return (out or b"").decode()

    def up(self) -> None:
        self._write_project_files()
        self._create_network()
        for spec in self.services:
            for key in spec.volumes:
                self._create_volume(key)
        for index, spec in enumerate(self.services):
            self._start_service(spec, index)

    def remove(self) -> None:
        """Delete what this stack created, and nothing else."""
        for container in self.containers.values():
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=False)
        for name in self.volume_names:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(name).remove(force=True)
        if self.network_name:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.networks.get(self.network_name).remove()

    # -- Compose emulation -------------------------------------------------

    def _base_labels(self) -> dict[str, str]:
        return {
            "com.docker.compose.project": self.project,
            "com.docker.compose.version": COMPOSE_VERSION,
            TEST_LABEL: "1",
        }

    def _write_project_files(self) -> None:
        self.working_dir.mkdir(parents=True, exist_ok=True)
        lines = ["services:"]
        for spec in self.services:
            lines += [f"  {spec.name}:", f"    image: {spec.image}", "    env_file: .env"]
            if spec.volumes:
                lines.append("    volumes:")
                lines += [f"      - {key}:{path}" for key, path in spec.volumes.items()]
            if spec.depends_on:
                lines.append("    depends_on:")
                for service, condition in spec.depends_on.items():
                    lines += [f"      {service}:", f"        condition: {condition}"]
            if spec.stop_grace_period is not None:
                lines.append(f"    stop_grace_period: {spec.stop_grace_period}s")
        lines.append("volumes:")
        for spec in self.services:
            lines += [f"  {key}: {{}}" for key in spec.volumes]
        self.config_file.write_text("\n".join(lines) + "\n")
        env_lines = [f"APP_ID={self.project}"]
        for spec in self.services:
            env_lines += [f"{k}={v}" for k, v in spec.environment.items()]
        (self.working_dir / ".env").write_text("\n".join(env_lines) + "\n")

    def _create_network(self) -> None:
        self.network_name = f"{self.project}_default"
        labels = self._base_labels() | {"com.docker.compose.network": "default"}
        self.client.networks.create(self.network_name, driver="bridge", labels=labels)

    def _create_volume(self, key: str) -> None:
        name = self.volume(key)
        if name in self.volume_names:
            return
        labels = self._base_labels() | {"com.docker.compose.volume": key}
        self.client.volumes.create(name=name, labels=labels)
        self.volume_names.append(name)

    def _start_service(self, spec: ServiceSpec, index: int) -> None:
        require_image(self.client, spec.image)
        image_id = self.client.images.get(spec.image).id
        labels = self._base_labels() | {
            "com.docker.compose.service": spec.name,
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.project.config_files": str(self.config_file),
            "com.docker.compose.project.working_dir": str(self.working_dir),
            "com.docker.compose.image": image_id,
            "com.docker.compose.config-hash": secrets.token_hex(32),
            # As Compose v2 writes it: "service:condition:restart", comma-separated.
            "com.docker.compose.depends_on": ",".join(
                f"{service}:{condition}:false" for service, condition in spec.depends_on.items()
            ),
        }
        # create + start, never run: run() would pull a missing image.
        container = _create(
            self.client,
            spec.stop_grace_period,
            image=spec.image,
            command=spec.command,
            name=f"{self.project}-{spec.name}-1",
            hostname=spec.name,
            environment=spec.environment,
            labels=labels,
            volumes={self.volume(k): {"bind": p, "mode": "rw"} for k, p in spec.volumes.items()},
            network=self.network_name,
            restart_policy={"Name": "no"},
            healthcheck=spec.healthcheck,
        )
        self.containers[spec.name] = container
        container.start()


def _create(client: docker.DockerClient, stop_timeout: int | None, **kwargs: object) -> Container:
    """client.containers.create(**KWARGS), with the container's StopTimeout,
    which docker-py's high-level create does not take (its low-level one does)."""
    kwargs["version"] = client.api._version
    create_kwargs = _create_container_args(kwargs)
    if stop_timeout is not None:
        create_kwargs["stop_timeout"] = stop_timeout
    return client.containers.get(client.api.create_container(**create_kwargs)["Id"])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _exec_ok(container: Container, cmd: list[str], environment: dict[str, str]) -> bool:
    container.reload()
    if container.status != "running":
        raise RuntimeError(f"{container.name} stopped: {container.logs(tail=20).decode()}")
    return container.exec_run(cmd, environment=environment).exit_code == 0


def wait_for_mariadb(container: Container, root_password: str, timeout: float = 90) -> None:
    # TCP, not the socket: the entrypoint's bootstrap server listens only on
    # the socket, so TCP answers once the real server is up.
    cmd = ["mariadb", "--protocol=tcp", "-h127.0.0.1", "-uroot", "-e", "SELECT 1"]
    wait_until(lambda: _exec_ok(container, cmd, {"MYSQL_PWD": root_password}), timeout, "MariaDB")


def mariadb_sql(stack: ComposeStack, sql: str, database: str = "wordpress") -> str:
    """SQL run as root by the client in the stack's mariadb service; its rows
    tab-separated, without column names."""
    spec = next(s for s in stack.services if s.name == "mariadb")
    password = spec.environment["MYSQL_ROOT_PASSWORD"]
    return stack.exec("mariadb", ["mariadb", "-uroot", "-N", database, "-e", sql],
                      {"MYSQL_PWD": password})  # fmt: skip


def wait_for_postgres(container: Container, user: str, timeout: float = 90) -> None:
    cmd = ["pg_isready", "-h", "127.0.0.1", "-U", user]
    wait_until(lambda: _exec_ok(container, cmd, {}), timeout, "PostgreSQL")


# -- Realistic stacks -------------------------------------------------------

# The app container stands in for WordPress/Odoo: it seeds its files volume
# on first start (as those images do) and then stays up, ending on SIGTERM
# as a real app server does (a bare `sleep` as PID 1 would ignore it, and
# every stop would wait for Docker's timeout).
SEED_APP_FILES = (
    "if [ ! -e {root}/.seeded ]; then "
    "mkdir -p {root}/content/uploads {root}/empty-dir && "
    "echo '<?php // index' > {root}/index.php && "
    "echo 'define(DB_NAME, wordpress);' > {root}/config.php && "
    "head -c 300000 /dev/urandom > {root}/content/uploads/photo.jpg && "
    "ln -s index.php {root}/link-to-index && "
    "touch {root}/.seeded; fi; trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"
)


def wordpress_stack(client: docker.DockerClient, project: str, working_dir: Path) -> ComposeStack:
    """App container with a files volume + MariaDB with a data volume; the
    credentials live in the database container's environment."""
    db_env = {
        "MYSQL_ROOT_PASSWORD": f"root-{secrets.token_hex(8)}",
        "MYSQL_DATABASE": "wordpress",
        "MYSQL_USER": "wordpress",
        "MYSQL_PASSWORD": f"wp-{secrets.token_hex(8)}",
    }
    services = [
        ServiceSpec("mariadb", MARIADB_IMAGE, db_env, {"mysql_data": "/var/lib/mysql"}),
        ServiceSpec(
            "wordpress",
            APP_IMAGE,
            {"WORDPRESS_DB_HOST": "mariadb", "WORDPRESS_DB_NAME": "wordpress"},
            {"wordpress": "/var/www/html"},
            ["sh", "-c", SEED_APP_FILES.format(root="/var/www/html")],
            depends_on={"mariadb": "service_started"},
        ),
    ]
    return ComposeStack(client, project, working_dir, services)


def odoo_stack(client: docker.DockerClient, project: str, working_dir: Path) -> ComposeStack:
    """App + PostgreSQL whose POSTGRES_USER is the app id, with trust auth."""
    db_env = {
        "POSTGRES_USER": project,
        "POSTGRES_DB": "postgres",
        "POSTGRES_HOST_AUTH_METHOD": "trust",
    }
    services = [
        ServiceSpec(
            "postgres", POSTGRES_IMAGE, db_env, {"postgres_data": "/var/lib/postgresql/data"}
        ),
        ServiceSpec(
            "odoo",
            APP_IMAGE,
            {"HOST": "postgres", "USER": project},
            {"odoo_filestore": "/var/lib/odoo"},
            ["sh", "-c", SEED_APP_FILES.format(root="/var/lib/odoo")],
            depends_on={"postgres": "service_started"},
        ),
    ]
    return ComposeStack(client, project, working_dir, services)


def random_project(kind: str) -> str:
    """A project name shaped like the platform's (e.g. wordpress_ab12c)."""
    return f"{kind}_{secrets.token_hex(3)[:5]}"


def volume_dir(client: docker.DockerClient, stack: ComposeStack, volume: str) -> Path:
    """Where the stack's volume VOLUME (its key) keeps its files on this host."""
    return Path(client.volumes.get(stack.volume(volume)).attrs["Mountpoint"])


def all_running(stack: ComposeStack) -> bool:
    for container in stack.containers.values():
        container.reload()
        if container.status != "running":
            return False
    return True


def remove_project(client: docker.DockerClient, project: str) -> None:
    """What a test may have left of Compose project PROJECT, found by its
    label (only that project's objects): containers, volumes, networks."""
    label = f"{PROJECT_LABEL}={project}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True, v=True)
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()


def project_leftovers(client: docker.DockerClient, project: str) -> list[str]:
    """The names of what carries PROJECT's label on this engine."""
    label = f"{PROJECT_LABEL}={project}"
    return (
        [c.name for c in client.containers.list(all=True, filters={"label": label})]
        + [v.name for v in client.volumes.list(filters={"label": label})]
        + [n.name for n in client.networks.list(filters={"label": label})]
    )
