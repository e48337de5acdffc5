"""Database detection: the engine from the image reference, credentials from
the container's environment, `*_FILE` secrets, and per-service overrides."""

from __future__ import annotations

import logging
import secrets

import docker
import pytest

from engine.database_detection import (
    DatabaseOverride,
    apply_overrides,
    detect_database,
    detect_engine,
    resolve_password_file,
)
from engine.docker_client import container_file_reader
from engine.errors import EngineError
from engine.inventory import AppInfo, ContainerInfo, DatabaseCredentials
from engine.secret import Secret
from tests.images import APP_IMAGE
from tests.stacks import TEST_LABEL, wait_until


@pytest.mark.parametrize(
    ("image", "engine"),
    [
        ("mysql", "mysql"),
        ("mysql:8.0", "mysql"),
        ("mysql:8.0.36-debian", "mysql"),
        ("docker.io/library/mysql:8", "mysql"),
        ("library/mysql", "mysql"),
        ("bitnami/mysql:8.4", "mysql"),
        ("mysql/mysql-server:8.0", "mysql"),
        ("percona:8.0", "mysql"),
        ("percona/percona-server:8.0", "mysql"),
        ("mariadb", "mariadb"),
        ("MariaDB:10.11", "mariadb"),
        ("mariadb:10.6@sha256:" + "a" * 64, "mariadb"),
        ("mariadb@sha256:" + "b" * 64, "mariadb"),
        ("docker.io/bitnami/mariadb:11.2", "mariadb"),
        ("bitnami/mariadb-galera:11", "mariadb"),
        ("localtest/mariadb:10.11", "mariadb"),
        ("localhost:5000/mariadb:10.11", "mariadb"),
        ("postgres", "postgres"),
        ("postgres:15-alpine", "postgres"),
        ("docker.io/library/postgres:16", "postgres"),
        ("bitnami/postgresql:16", "postgres"),
        ("bitnami/postgresql-repmgr:16", "postgres"),
        ("pgvector/pgvector:pg16", "postgres"),
        ("supabase/postgres:15.1.0.147", "postgres"),
        ("postgis/postgis:16-3.4", "postgres"),
        ("timescale/timescaledb:latest-pg16", "postgres"),
        ("timescale/timescaledb-ha:pg16", "postgres"),
        ("ghcr.io/some-org/postgres:15", "postgres"),
        ("registry.example.com:5000/team/postgres:15@sha256:" + "c" * 64, "postgres"),
        ("localtest/postgres:15", "postgres"),
        ("mongo", "mongo"),
        ("mongo:7.0", "mongo"),
        ("bitnami/mongodb:7.0", "mongo"),
        ("mongodb/mongodb-community-server:7.0-ubi8", "mongo"),
        ("percona/percona-server-mongodb:6.0", "mongo"),
        ("ghcr.io/library/mongo:6", "mongo"),
    ],
)
def test_detect_engine_knows_database_images(image: str, engine: str) -> None:
    assert detect_engine(image) == engine


@pytest.mark.parametrize(
    "image",
    [
        "mysql-router",
        "mysql/mysql-router:8.0",
        "phpmyadmin",
        "phpmyadmin/phpmyadmin:5",
        "adminer:4",
        "prometheuscommunity/postgres-exporter",
        "wrouesnel/postgres_exporter",
        "wordpress:6-php8.2",
        "mongo-express",
        "odoo:17",
        "redis:7",
        "localtest/app:1",
        "mysql/sidecar",  # a namespace named mysql is not the repository
        "postgres/pgadmin",
        "sha256:" + "d" * 64,  # a container created from an image id
        "",
    ],
)
def test_detect_engine_ignores_other_images(image: str) -> None:
    assert detect_engine(image) is None


def _container(image: str, name: str = "shop-db-1", service: str = "db") -> ContainerInfo:
    return ContainerInfo(id="c" * 64, name=name, service=service, image=image, state="running")


def _credentials(image: str, env: dict[str, str]) -> DatabaseCredentials:
    database = detect_database(_container(image), env)
    assert database is not None
    return database.credentials


@pytest.mark.parametrize(
    ("image", "env", "user", "password", "databases"),
    [
        # MySQL / MariaDB: root first, it sees every database.
        (
            "mysql:8",
            {"MYSQL_ROOT_PASSWORD": "rootpw", "MYSQL_USER": "wp", "MYSQL_PASSWORD": "wppw",
             "MYSQL_DATABASE": "wordpress"},
            "root", "rootpw", ("wordpress",),
        ),
        ("mariadb:11", {"MARIADB_ROOT_PASSWORD": "mpw", "MARIADB_DATABASE": "shop"},
         "root", "mpw", ("shop",)),
        # The mariadb image reads MARIADB_* before MYSQL_*.
        ("mariadb:11", {"MARIADB_ROOT_PASSWORD": "new", "MYSQL_ROOT_PASSWORD": "old"},
         "root", "new", ()),
        ("mariadb:11", {"MYSQL_ROOT_PASSWORD": "old"}, "root", "old", ()),
        ("mysql:8", {"MYSQL_USER": "wp", "MYSQL_PASSWORD": "wppw", "MYSQL_DATABASE": "wp",
                     "MYSQL_RANDOM_ROOT_PASSWORD": "yes"}, "wp", "wppw", ("wp",)),
        ("mariadb:11", {"MARIADB_USER": "app", "MARIADB_PASSWORD": "apppw",
                        "MARIADB_RANDOM_ROOT_PASSWORD": "1"}, "app", "apppw", ()),
        ("mysql:8", {"MYSQL_ALLOW_EMPTY_PASSWORD": "yes", "MYSQL_USER": "wp",
                     "MYSQL_PASSWORD": "wppw"}, "root", None, ()),
        ("mariadb:11", {"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1"}, "root", None, ()),
        ("mysql:8", {"MYSQL_ROOT_PASSWORD": "", "MYSQL_ALLOW_EMPTY_PASSWORD": "1"},
         "root", None, ()),
        ("bitnami/mariadb:11", {"MARIADB_ROOT_USER": "admin", "MARIADB_ROOT_PASSWORD": "bpw",
                                "MARIADB_DATABASE": "app"}, "admin", "bpw", ("app",)),
        ("bitnami/mysql:8", {"ALLOW_EMPTY_PASSWORD": "yes"}, "root", None, ()),
        # Only a random root password: nothing to log in with, say so with None.
        ("mysql:8", {"MYSQL_RANDOM_ROOT_PASSWORD": "yes"}, "root", None, ()),
        # PostgreSQL: POSTGRES_USER is the superuser, often the app id.
        ("postgres:15", {"POSTGRES_PASSWORD": "pgpw"}, "postgres", "pgpw", ()),
        ("postgres:15", {"POSTGRES_USER": "odoo_ab12c", "POSTGRES_DB": "postgres",
                         "POSTGRES_HOST_AUTH_METHOD": "trust"}, "odoo_ab12c", None, ("postgres",)),
        ("pgvector/pgvector:pg16", {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "v",
                                    "POSTGRES_DB": "vectors"}, "app", "v", ("vectors",)),
        ("bitnami/postgresql:16", {"POSTGRESQL_USERNAME": "gitea", "POSTGRESQL_PASSWORD": "gpw",
                                   "POSTGRESQL_DATABASE": "gitea"}, "gitea", "gpw", ("gitea",)),
        ("bitnami/postgresql:16", {"POSTGRESQL_USERNAME": "gitea", "POSTGRESQL_PASSWORD": "gpw",
                                   "POSTGRESQL_POSTGRES_PASSWORD": "superpw"},
         "postgres", "superpw", ()),
        ("bitnami/postgresql:16", {"POSTGRESQL_PASSWORD": "only"}, "postgres", "only", ()),
        # Mongo: authentication only with both root variables.
        ("mongo:7", {"MONGO_INITDB_ROOT_USERNAME": "admin", "MONGO_INITDB_ROOT_PASSWORD": "mpw",
                     "MONGO_INITDB_DATABASE": "app"}, "admin", "mpw", ("app",)),
        ("mongo:7", {}, "", None, ()),
        ("mongo:7", {"MONGO_INITDB_DATABASE": "app"}, "", None, ("app",)),
        ("bitnami/mongodb:7", {"MONGODB_ROOT_PASSWORD": "bm"}, "root", "bm", ()),
        ("bitnami/mongodb:7", {"MONGODB_ROOT_USER": "boss", "MONGODB_ROOT_PASSWORD": "bm",
                               "MONGODB_DATABASE": "d"}, "boss", "bm", ("d",)),
        ("bitnami/mongodb:7", {"MONGODB_USERNAME": "u", "MONGODB_PASSWORD": "p"}, "u", "p", ()),
    ],
)  # fmt: skip
def test_credentials_from_environment(
    image: str, env: dict[str, str], user: str, password: str | None, databases: tuple[str, ...]
) -> None:
    credentials = _credentials(image, env)
    assert credentials.user == user
    assert credentials.password == (Secret(password) if password is not None else None)
    assert credentials.databases == databases
    assert credentials.password_file is None


def test_no_database_for_other_images_or_one_off_containers() -> None:
    env = {"MYSQL_ROOT_PASSWORD": "x"}
    assert detect_database(_container("wordpress:6"), env) is None
    one_off = ContainerInfo("i" * 64, "shop-init", "init", "mariadb:11", "exited", one_off=True)
    assert detect_database(one_off, env) is None


def test_forced_engine_reads_that_engines_variables() -> None:
    database = detect_database(
        _container("myorg/custom-db:3"), {"POSTGRES_USER": "shop"}, engine="postgres"
    )
    assert database is not None and database.engine == "postgres"
    assert database.credentials.user == "shop"


def test_password_never_shows_in_reprs() -> None:
    password = f"hunter-{secrets.token_hex(8)}"
    database = detect_database(
        _container("mariadb:11"), {"MARIADB_ROOT_PASSWORD": password, "MARIADB_DATABASE": "d"}
    )
    assert database is not None and database.credentials.password is not None
    assert database.credentials.password.reveal() == password
    app = AppInfo("shop", (database.container,), (), (database,), ())
    for text in (repr(database), str(database), repr(app), repr(database.credentials)):
        assert password not in text


# -- *_FILE secrets ----------------------------------------------------------------


def test_file_variables_are_read_through_the_reader() -> None:
    files = {"/run/secrets/root": "from-file\n\n", "/run/secrets/user": "wp"}
    asked: list[str] = []

    def read(path: str) -> str:
        asked.append(path)
        return files[path].rstrip("\n")

    database = detect_database(
        _container("mysql:8"),
        {"MYSQL_ROOT_PASSWORD_FILE": "/run/secrets/root", "MYSQL_USER_FILE": "/run/secrets/user"},
        read,
    )
    assert database is not None
    assert database.credentials.user == "root"
    assert database.credentials.password == Secret("from-file")
    assert database.credentials.password_file == "/run/secrets/root"
    assert asked == ["/run/secrets/root"]  # files are read only when needed


def test_file_variable_of_postgres_user_and_password() -> None:
    files = {"/s/user": "odoo", "/s/pw": "pgpw"}
    credentials = detect_database(
        _container("postgres:16"),
        {"POSTGRES_USER_FILE": "/s/user", "POSTGRES_PASSWORD_FILE": "/s/pw"},
        files.__getitem__,
    )
    assert credentials is not None
    assert credentials.credentials.user == "odoo"
    assert credentials.credentials.password == Secret("pgpw")


def test_direct_variable_wins_over_file_variable() -> None:
    def read(path: str) -> str:
        raise AssertionError(f"read {path}")

    credentials = detect_database(
        _container("mongo:7"),
        {
            "MONGO_INITDB_ROOT_USERNAME": "admin",
            "MONGO_INITDB_ROOT_PASSWORD": "direct",
            "MONGO_INITDB_ROOT_PASSWORD_FILE": "/run/secrets/pw",
        },
        read,
    )
    assert credentials is not None and credentials.credentials.password == Secret("direct")


def test_unread_file_is_kept_for_later_and_resolved() -> None:
    env = {"MARIADB_ROOT_PASSWORD_FILE": "/run/secrets/db_root"}
    database = detect_database(_container("mariadb:11"), env)  # no reader: a stopped container
    assert database is not None
    assert database.credentials.user == "root"
    assert database.credentials.password is None
    assert database.credentials.password_file == "/run/secrets/db_root"

    resolved = resolve_password_file(database, {"/run/secrets/db_root": "later"}.__getitem__)
    assert resolved.credentials.password == Secret("later")
    assert resolved.container == database.container and resolved.engine == "mariadb"
    # Nothing to resolve: the same object back, the reader not called.
    assert resolve_password_file(resolved, lambda path: pytest.fail(path)) is resolved


def test_failing_reader_leaves_password_unresolved_and_logs_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def read(path: str) -> str:
        raise EngineError(f"cannot read {path} in container abc: cat exited 1")

    with caplog.at_level(logging.WARNING, logger="engine.database_detection"):
        database = detect_database(
            _container("postgres:16"), {"POSTGRES_PASSWORD_FILE": "/run/secrets/pg"}, read
        )
    assert database is not None
    assert database.credentials.password is None
    assert database.credentials.password_file == "/run/secrets/pg"
    assert "/run/secrets/pg" in caplog.text


@pytest.mark.docker
def test_container_file_reader_reads_with_docker_exec(docker_client: docker.DockerClient) -> None:
    password = f"s3cret-{secrets.token_hex(6)}"
    container = docker_client.containers.create(
        APP_IMAGE,
        ["sh", "-c", f"mkdir -p /run/secrets && printf '{password}\\n' > /run/secrets/db "
                     "&& chmod 0400 /run/secrets/db && exec sleep 300"],
        labels={TEST_LABEL: "1"},
    )  # fmt: skip
    try:
        container.start()
        read = container_file_reader(docker_client, container.id)
        wait_until(lambda: container.exec_run(["test", "-e", "/run/secrets/db"]).exit_code == 0,
                   30, "secret file")  # fmt: skip
        assert read("/run/secrets/db") == password
        with pytest.raises(EngineError) as excinfo:
            read("/run/secrets/missing")
        assert "/run/secrets/missing" in str(excinfo.value)
        assert password not in str(excinfo.value)

        info = ContainerInfo(container.id, "x-db-1", "db", "mariadb:11", "running")
        database = detect_database(info, {"MARIADB_ROOT_PASSWORD_FILE": "/run/secrets/db"}, read)
        assert database is not None and database.credentials.password == Secret(password)
    finally:
        container.remove(force=True, v=True)

    # The container is gone: reading fails with a clear, secret-free error.
    with pytest.raises(EngineError, match="cannot read /run/secrets/db"):
        read("/run/secrets/db")


# -- Overrides ---------------------------------------------------------------------


def _app() -> AppInfo:
    db = ContainerInfo("1" * 64, "shop-db-1", "db", "mariadb:11", "running")
    replica = ContainerInfo("2" * 64, "shop-replica-1", "replica", "mariadb:11", "running")
    custom = ContainerInfo("3" * 64, "shop-store-1", "store", "myorg/store:2", "running")
    init = ContainerInfo("4" * 64, "shop-init", "init", "myorg/store:2", "exited", one_off=True)
    env = {"MARIADB_ROOT_PASSWORD": "rootpw", "MARIADB_DATABASE": "shop"}
    databases = tuple(
        d for c in (db, replica) if (d := detect_database(c, env)) is not None
    )  # fmt: skip
    return AppInfo("shop", (db, init, replica, custom), (), databases, ())


def test_no_overrides_change_nothing() -> None:
    app = _app()
    assert apply_overrides(app, {}) == app
    assert [d.container.service for d in app.databases] == ["db", "replica"]


def test_override_skips_a_service() -> None:
    app = apply_overrides(_app(), {"replica": DatabaseOverride(skip=True)})
    assert [d.container.service for d in app.databases] == ["db"]


def test_override_names_the_credentials() -> None:
    override = DatabaseOverride(user="backup", password=Secret("bk"), databases=("shop", "logs"))
    app = apply_overrides(_app(), {"db": override})
    db = next(d for d in app.databases if d.container.service == "db")
    assert db.credentials == DatabaseCredentials("backup", Secret("bk"), ("shop", "logs"))
    replica = next(d for d in app.databases if d.container.service == "replica")
    assert replica.credentials.user == "root"  # other services untouched


def test_override_forces_an_engine_on_an_unknown_image() -> None:
    app = apply_overrides(
        _app(), {"store": DatabaseOverride(engine="postgres", password=Secret("pw"))}
    )
    store = next(d for d in app.databases if d.container.service == "store")
    assert store.engine == "postgres"
    assert store.credentials == DatabaseCredentials("postgres", Secret("pw"))
    # One-off containers never become databases, whatever the override says.
    assert all(not d.container.one_off for d in app.databases)
    assert apply_overrides(_app(), {"init": DatabaseOverride(engine="mysql")}) == _app()


def test_override_of_an_unknown_service_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.database_detection"):
        app = apply_overrides(_app(), {"dbb": DatabaseOverride(skip=True)})
    assert app == _app()
    assert "dbb" in caplog.text


def test_override_repr_hides_the_password() -> None:
    assert "topsecret" not in repr(DatabaseOverride(password=Secret("topsecret")))
