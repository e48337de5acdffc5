"""Discovery of apps on the real Docker engine: containers, volumes, config
files and databases of Compose-like stacks; plus the pure parts (app id
validation, apparent size) and connecting to the engine."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from engine.database_detection import DatabaseOverride, resolve_password_file
from engine.discovery import apparent_size, discover_apps, get_app
from engine.docker_client import connect
from engine.errors import AppNotFound, DockerUnavailable
from engine.inventory import AppInfo
from engine.secret import Secret
from tests.images import APP_IMAGE, MARIADB_IMAGE
from tests.stacks import TEST_LABEL, ComposeStack, wait_for_mariadb, wait_until

# -- Connecting ----------------------------------------------------------------------


@pytest.mark.docker
def test_connect_returns_a_client_that_answers() -> None:
    client = connect(timeout=30)
    try:
        assert client.ping() is True
    finally:
        client.close()


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("unix:///nonexistent/docker.sock", "unix:///nonexistent/docker.sock"),
        ("tcp://admin:hunter2@127.0.0.1:1", "tcp://127.0.0.1:1"),
    ],
)
def test_connect_without_an_engine_says_where_it_looked(base_url: str, shown: str) -> None:
    with pytest.raises(DockerUnavailable) as excinfo:
        connect(base_url, timeout=5)
    message = str(excinfo.value)
    assert f"no Docker engine answers at {shown}" in message
    assert "hunter2" not in message


# -- App ids -------------------------------------------------------------------------


class _NoDocker:
    """A client that fails the test if discovery reaches Docker at all."""

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"a malformed app id reached Docker (client.{name})")


@pytest.mark.parametrize(
    "app_id",
    ["", "WordPress", "-app", "_app", "app id", "app;rm -rf", "a/b", "app=x", "../etc",
     "app\n", "app,other", "\uff41pp", "app*", 123, None],
)  # fmt: skip
def test_malformed_app_id_is_not_found_without_asking_docker(app_id: Any) -> None:
    with pytest.raises(AppNotFound, match="not a valid app id"):
        get_app(_NoDocker(), app_id)  # type: ignore[arg-type]


# -- Apparent size -------------------------------------------------------------------


def _du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True,
                              text=True).stdout.split()[0])  # fmt: skip


def test_apparent_size_counts_like_du_without_following_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 500_000)
    tree = tmp_path / "volume"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "data.bin").write_bytes(os.urandom(123_457))
    (tree / "small.txt").write_text("hello")
    (tree / "empty").touch()
    (tree / "link-out").symlink_to(outside)  # not followed: counts len(target) only
    (tree / "dangling").symlink_to("nowhere")
    before = apparent_size(str(tree))
    assert before == _du_bytes(tree)
    assert 123_457 + 5 < before < 123_457 + 5 + 500_000

    os.link(tree / "a" / "b" / "data.bin", tree / "hardlink.bin")
    after = apparent_size(str(tree))
    assert after == _du_bytes(tree)
    assert after - before < 123_457  # the hardlinked inode is counted once
    assert apparent_size(str(tree)) == after  # stable


# -- Synthetic Compose projects (fast) ------------------------------------------------


SLEEP = ["sleep", "300"]


class Project:
    """Containers and volumes labelled as one Compose project; removes exactly
    what it created."""

    def __init__(self, client: docker.DockerClient, name: str) -> None:
        self.client = client
        self.name = name
        self.containers: list[Container] = []
        self.volumes: list[str] = []

    def labels(self, service: str, **extra: str) -> dict[str, str]:
        return {
            "com.docker.compose.project": self.name,
            "com.docker.compose.service": service,
            "com.docker.compose.oneoff": "False",
            TEST_LABEL: "1",
        } | extra

    def container(
        self,
        service: str,
        *,
        name: str | None = None,
        image: str = APP_IMAGE,
        command: list[str] | None = SLEEP,  # None: the image's own command
        labels: dict[str, str] | None = None,
        start: bool = True,
        **kwargs: Any,
    ) -> Container:
        # create + start, never run: run() would pull a missing image.
        container = self.client.containers.create(
            image,
            command,
            name=name or f"{self.name}-{service}-1",
            labels=labels if labels is not None else self.labels(service),
            **kwargs,
        )
        self.containers.append(container)
        if start:
            container.start()
        return container

    def volume(self, name: str, labels: dict[str, str]) -> str:
        self.client.volumes.create(name=name, labels={TEST_LABEL: "1"} | labels)
        self.volumes.append(name)
        return name

    def remove(self) -> None:
        for container in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)  # v: its anonymous volumes too
        for name in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(name).remove(force=True)


@pytest.fixture
def project(docker_client: docker.DockerClient) -> Iterator[Callable[[str], Project]]:
    made: list[Project] = []

    def make(kind: str) -> Project:
        made.append(Project(docker_client, f"{kind}_{secrets.token_hex(3)}"))
        return made[-1]

    yield make
    for each in made:
        each.remove()


def _wait_exited(container: Container) -> None:
    assert container.wait(timeout=60)["StatusCode"] == 0


@pytest.mark.docker
def test_unknown_app_is_not_found(docker_client: docker.DockerClient) -> None:
    app_id = f"nosuchapp_{secrets.token_hex(4)}"
    with pytest.raises(AppNotFound, match=f"no app '{app_id}' on this Docker host"):
        get_app(docker_client, app_id)


@pytest.mark.docker
def test_volumes_labelled_and_mounted_but_not_anonymous(
    docker_client: docker.DockerClient, project: Callable[[str], Project]
) -> None:
    p = project("vols")
    labelled = p.volume(f"{p.name}_data", {"com.docker.compose.project": p.name})
    unlabelled = p.volume(f"extra_{secrets.token_hex(4)}", {})
    bystander = p.volume(f"bystander_{secrets.token_hex(4)}", {})  # nobody's: not included
    # "/anonymous": an anonymous volume, no stable name to restore to.
    app_container = p.container(
        "app", volumes=[f"{unlabelled}:/extra", f"{labelled}:/data", "/anonymous"]
    )
    app_container.reload()
    anonymous = [
        m["Name"] for m in app_container.attrs["Mounts"] if m["Destination"] == "/anonymous"
    ]
    assert len(anonymous) == 1

    app = get_app(docker_client, p.name)
    assert [v.name for v in app.volumes] == sorted([labelled, unlabelled])
    assert bystander not in [v.name for v in app.volumes]
    for volume in app.volumes:
        assert volume.mountpoint == docker_client.volumes.get(volume.name).attrs["Mountpoint"]
        assert Path(volume.mountpoint).is_dir()
        assert volume.size_bytes is None  # not asked for
    assert app.volumes[[v.name for v in app.volumes].index(unlabelled)].labels == {TEST_LABEL: "1"}


@pytest.mark.docker
def test_app_with_only_a_labelled_volume_is_found(
    docker_client: docker.DockerClient, project: Callable[[str], Project]
) -> None:
    p = project("volonly")
    name = p.volume(f"{p.name}_data", {"com.docker.compose.project": p.name})
    app = get_app(docker_client, p.name, measure_sizes=True)
    assert app.containers == () and app.databases == () and app.config_files == ()
    assert [(v.name, v.size_bytes) for v in app.volumes] == [
        (name, _du_bytes(Path(app.volumes[0].mountpoint)))
    ]


@pytest.mark.docker
def test_one_off_containers(
    docker_client: docker.DockerClient, project: Callable[[str], Project]
) -> None:
    p = project("oneoff")
    # `docker compose run` containers carry oneoff=True, running or not.
    p.container("app", name=f"{p.name}-app-run-1a2b",
                labels=p.labels("app", **{"com.docker.compose.oneoff": "True"}))  # fmt: skip
    # An `<app>-init` that has finished, and Compose's name for a service "init".
    done = p.container(p.name + "-init", name=f"{p.name}-init", command=["true"])
    done_service = p.container("init", command=["true"])
    # Still running: part of the running state.
    running = p.container("migrate", name=f"{p.name}-init-2")
    for container in (done, done_service):
        _wait_exited(container)

    one_off = {c.name: c.one_off for c in get_app(docker_client, p.name).containers}
    assert one_off == {
        f"{p.name}-app-run-1a2b": True,
        f"{p.name}-init": True,
        f"{p.name}-init-1": True,
        running.name: False,
    }


@pytest.mark.docker
def test_config_files_readable_here_with_unique_archive_names(
    docker_client: docker.DockerClient, project: Callable[[str], Project], tmp_path: Path
) -> None:
    p = project("cfg")
    workdir = tmp_path / "stack"
    (workdir / "overrides").mkdir(parents=True)
    (workdir / "docker-compose.yml").write_text("services: {}\n")
    (workdir / "overrides" / "docker-compose.yml").write_text("services: {}\n")
    (workdir / ".env").write_text("A=1\n")
    (workdir / "prod.env").write_text("B=2\n")
    config_files = [
        str(workdir / "docker-compose.yml"),
        "overrides/docker-compose.yml",  # relative: to the working dir
        str(workdir / "missing.yml"),  # not on this host: left out
    ]
    labels = p.labels("app") | {
        "com.docker.compose.project.working_dir": str(workdir),
        "com.docker.compose.project.config_files": ",".join(config_files),
        "com.docker.compose.project.environment_file": f"{workdir}/prod.env",
    }
    p.container("app", labels=labels, start=False)
    p.container("worker", labels=labels | {"com.docker.compose.service": "worker"}, start=False)

    app = get_app(docker_client, p.name)
    assert app.working_dir == str(workdir)
    assert [(f.path, f.archive_name) for f in app.config_files] == [
        (str(workdir / "docker-compose.yml"), "docker-compose.yml"),
        (str(workdir / "overrides" / "docker-compose.yml"), "docker-compose-2.yml"),
        (str(workdir / "prod.env"), "prod.env"),
        (str(workdir / ".env"), ".env"),
    ]


@pytest.mark.docker
def test_discover_apps_skips_excluded_projects(
    docker_client: docker.DockerClient, project: Callable[[str], Project]
) -> None:
    first, second = project("alpha"), project("beta")
    first.container("app", start=False)
    second.container("app", start=False)

    found = [a.app_id for a in discover_apps(docker_client)]
    assert first.name in found and second.name in found
    assert found == sorted(found)
    assert "websoft9" not in found

    found = [a.app_id for a in discover_apps(docker_client, excluded_projects=[first.name])]
    assert first.name not in found and second.name in found


# -- Real stacks --------------------------------------------------------------------


def _app(apps: list[AppInfo], app_id: str) -> AppInfo:
    return next(app for app in apps if app.app_id == app_id)


def _assert_matches_stack(app: AppInfo, stack: ComposeStack) -> None:
    assert [(c.name, c.service, c.image, c.state, c.one_off) for c in app.containers] == sorted(
        (c.name, spec.name, spec.image, "running", False)
        for spec in stack.services
        for c in [stack.container(spec.name)]
    )
    assert [c.id for c in app.containers] == [
        c.id for c in sorted(stack.containers.values(), key=lambda c: c.name)
    ]
    assert [v.name for v in app.volumes] == sorted(stack.volume_names)
    for volume in app.volumes:
        assert volume.mountpoint == f"/var/lib/docker/volumes/{volume.name}/_data"
        assert Path(volume.mountpoint).is_dir()
        assert volume.labels["com.docker.compose.project"] == stack.project
    assert app.working_dir == str(stack.working_dir)
    assert [(f.path, f.archive_name) for f in app.config_files] == [
        (str(stack.config_file), "docker-compose.yml"),
        (str(stack.working_dir / ".env"), ".env"),
    ]


@pytest.mark.docker
@pytest.mark.slow
def test_discover_apps_finds_wordpress_and_odoo(
    docker_client: docker.DockerClient, wordpress: ComposeStack, odoo: ComposeStack
) -> None:
    apps = discover_apps(docker_client)
    _assert_matches_stack(_app(apps, wordpress.project), wordpress)
    _assert_matches_stack(_app(apps, odoo.project), odoo)
    assert _app(apps, odoo.project) == get_app(docker_client, odoo.project)

    apps = discover_apps(docker_client, excluded_projects=(wordpress.project,))
    ids = [app.app_id for app in apps]
    assert wordpress.project not in ids and odoo.project in ids


@pytest.mark.docker
@pytest.mark.slow
def test_wordpress_mariadb_root_password_from_its_env(
    docker_client: docker.DockerClient, wordpress: ComposeStack
) -> None:
    app = get_app(docker_client, wordpress.project)
    env = wordpress.services[0].environment
    assert len(app.databases) == 1
    database = app.databases[0]
    assert database.container.name == wordpress.container("mariadb").name
    assert database.engine == "mariadb"
    assert database.credentials.user == "root"
    assert database.credentials.password == Secret(env["MYSQL_ROOT_PASSWORD"])
    assert database.credentials.databases == ("wordpress",)
    assert env["MYSQL_ROOT_PASSWORD"] not in repr(app)
    # The credentials log in for real.
    out = wordpress.exec(
        "mariadb",
        ["mariadb", "-uroot", "-N", "-e", "SHOW DATABASES"],
        environment={"MYSQL_PWD": database.credentials.password.reveal()},
    )
    assert "wordpress" in out.split()


@pytest.mark.docker
@pytest.mark.slow
def test_measured_sizes_are_positive_stable_and_match_du(
    docker_client: docker.DockerClient, wordpress: ComposeStack
) -> None:
    files = Path(docker_client.volumes.get(wordpress.volume("wordpress")).attrs["Mountpoint"])
    wait_until(lambda: (files / ".seeded").exists(), 30, "the app to seed its volume")
    first = {v.name: v.size_bytes for v in get_app(docker_client, wordpress.project, True).volumes}
    second = {v.name: v.size_bytes for v in get_app(docker_client, wordpress.project, True).volumes}
    assert first == second
    assert first[wordpress.volume("wordpress")] == _du_bytes(files)
    assert first[wordpress.volume("wordpress")] > 300_000  # the seeded photo.jpg
    assert first[wordpress.volume("mysql_data")] > 1_000_000  # an initialised datadir


@pytest.mark.docker
@pytest.mark.slow
def test_finished_init_container_and_unlabelled_volume_join_the_app(
    docker_client: docker.DockerClient, wordpress: ComposeStack
) -> None:
    # A Project object under the stack's own name: it records and removes
    # only the container and volume made here.
    extra = Project(docker_client, wordpress.project)
    try:
        seed = extra.volume(f"seed_{secrets.token_hex(4)}", {})
        init = extra.container(
            f"{wordpress.project}-init",
            name=f"{wordpress.project}-init",
            # A database image with credentials: only being one-off keeps it out.
            image=MARIADB_IMAGE,
            command=["true"],
            environment={"MYSQL_ROOT_PASSWORD": "init-only"},
            volumes=[f"{seed}:/seed"],
        )
        _wait_exited(init)
        app = get_app(docker_client, wordpress.project)
    finally:
        extra.remove()
    by_name = {c.name: c for c in app.containers}
    assert by_name[init.name].one_off and by_name[init.name].state == "exited"
    assert [d.container.name for d in app.databases] == [wordpress.container("mariadb").name]
    assert seed in [v.name for v in app.volumes]


@pytest.mark.docker
@pytest.mark.slow
def test_odoo_postgres_user_is_the_app_id_without_password(
    docker_client: docker.DockerClient, odoo: ComposeStack
) -> None:
    app = get_app(docker_client, odoo.project)
    assert [(d.container.service, d.engine) for d in app.databases] == [("postgres", "postgres")]
    credentials = app.databases[0].credentials
    assert credentials.user == odoo.project
    assert credentials.password is None  # trust auth
    assert credentials.databases == ("postgres",)
    out = odoo.exec("postgres", ["psql", "-h", "127.0.0.1", "-U", credentials.user, "-d",
                                 "postgres", "-tAc", "SELECT current_user"])  # fmt: skip
    assert out.strip() == odoo.project


@pytest.mark.docker
@pytest.mark.slow
def test_overrides_through_get_app(docker_client: docker.DockerClient, odoo: ComposeStack) -> None:
    app = get_app(
        docker_client,
        odoo.project,
        overrides={
            "postgres": DatabaseOverride(databases=(odoo.project,)),
            # The app image is no database; forcing reads its env as Postgres'.
            "odoo": DatabaseOverride(engine="postgres", user="reader"),
        },
    )
    by_service = {d.container.service: d for d in app.databases}
    assert by_service["postgres"].credentials.databases == (odoo.project,)
    assert by_service["odoo"].engine == "postgres"
    assert by_service["odoo"].credentials.user == "reader"
    skipped = get_app(
        docker_client, odoo.project, overrides={"postgres": DatabaseOverride(skip=True)}
    )
    assert skipped.databases == ()


def _secret_tar(path: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(path)
        info.size, info.mode = len(content), 0o400
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.docker
@pytest.mark.slow
def test_password_file_secret_is_read_in_the_container(
    docker_client: docker.DockerClient, project: Callable[[str], Project]
) -> None:
    p = project("secretdb")
    password = f"file-{secrets.token_hex(8)}"
    data = p.volume(f"{p.name}_db", {"com.docker.compose.project": p.name})
    db = p.container(
        "db",
        image=MARIADB_IMAGE,
        command=None,
        environment={"MARIADB_ROOT_PASSWORD_FILE": "/run/secrets/db_root"},
        volumes=[f"{data}:/var/lib/mysql"],
        start=False,
    )
    assert db.put_archive("/", _secret_tar("run/secrets/db_root", password.encode() + b"\n"))
    db.start()
    wait_for_mariadb(db, password)

    database = get_app(docker_client, p.name).databases[0]
    assert database.credentials.password == Secret(password)
    assert database.credentials.password_file == "/run/secrets/db_root"

    # Stopped, the file cannot be read by exec: the path is kept for later.
    db.stop(timeout=30)
    stopped = get_app(docker_client, p.name).databases[0]
    assert stopped.credentials.password is None
    assert stopped.credentials.password_file == "/run/secrets/db_root"
    resolved = resolve_password_file(stopped, {"/run/secrets/db_root": password}.__getitem__)
    assert resolved.credentials.password == Secret(password)
