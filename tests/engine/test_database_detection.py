"""Database detection: the engine from the image reference, credentials from
the container's environment, `*_FILE` secrets, per-service overrides; for
private images the environment, data-directory markers and server binaries,
and the warnings for live data that gets no dump."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from engine.database_detection import (
    DatabaseOverride,
    ServerBinaries,
    SignalDetection,
    apply_overrides,
    detect_database,
    detect_engine,
    detect_from_signals,
    find_data_dirs,
    resolve_password_file,
    server_binary,
    undumped_warnings,
)
from engine.docker_client import container_file_reader
from engine.errors import EngineError
from engine.inventory import AppInfo, ContainerInfo, DatabaseCredentials, DataDir
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


# -- Detection from other signals: private or renamed images -----------------------

PRIVATE = ContainerInfo("p" * 64, "acme-db-1", "db", "registry.example/acme/pgsrv:1", "running")


def _tree(root: Path, files: list[str]) -> Path:
    """ROOT with FILES (a trailing / makes a directory)."""
    for name in files:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    return root


@pytest.mark.parametrize(
    ("files", "found"),
    [
        (["PG_VERSION", "base/1/PG_VERSION", "global/pg_control"],
         [("", "postgres", ("PG_VERSION",))]),
        # A volume mounted at /var/lib/postgresql (PGDATA its data/), bitnami's layouts.
        (["data/PG_VERSION"], [("data", "postgres", ("PG_VERSION",))]),
        (["postgresql/data/PG_VERSION"], [("postgresql/data", "postgres", ("PG_VERSION",))]),
        (["aria_log_control", "ibdata1", "mysql/db.opt", "mysql/global_priv.MAD"],
         [("", "mariadb", ("aria_log_control", "ibdata1", "mysql/"))]),
        (["ibdata1", "mysql.ibd", "mysql/general_log.CSV"], [("", "mysql", ("ibdata1", "mysql/"))]),
        (["mysql/user.frm"], [("", "mysql", ("mysql/",))]),
        (["WiredTiger", "mongod.lock", "collection-0.wt"],
         [("", "mongo", ("WiredTiger", "mongod.lock"))]),
        (["data/db/WiredTiger"], [("data/db", "mongo", ("WiredTiger",))]),
        # Not data directories: an app's files, a config directory named mysql,
        # a marker three levels down, a directory named like a marker.
        (["index.php", "content/uploads/photo.jpg"], []),
        (["mysql/my.cnf", "mysql/conf.d/"], []),
        (["a/b/c/PG_VERSION"], []),
        (["PG_VERSION/"], []),
    ],
)  # fmt: skip
def test_find_data_dirs_by_their_markers(tmp_path: Path, files: list[str], found: list) -> None:
    assert find_data_dirs(str(_tree(tmp_path / "volume", files))) == found


def test_find_data_dirs_follows_no_symlink_and_survives_unreadable_roots(tmp_path: Path) -> None:
    elsewhere = _tree(tmp_path / "elsewhere", ["PG_VERSION"])
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "link").symlink_to(elsewhere)
    (volume / "PG_VERSION_link").symlink_to(elsewhere / "PG_VERSION")
    assert find_data_dirs(str(volume)) == []
    assert find_data_dirs(str(tmp_path / "missing")) == []


@pytest.mark.parametrize(
    ("command", "engine"),
    [
        ("postgres", "postgres"),
        ("/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/data", "postgres"),
        ("postgres: checkpointer ", "postgres"),
        ("postgres: 15/main: walwriter", "postgres"),
        ("mariadbd --user=mysql --datadir=/var/lib/mysql", "mariadb"),
        ("/usr/sbin/mysqld", "mysql"),
        ("mongod --bind_ip_all", "mongo"),
        ("mongos --configdb x", None),  # a router holds no data
        ("mysqlrouter", None),
        ("psql -h postgres", None),  # a client, talking to a host named postgres
        ("sleep 2147483647", None),
        ("", None),
    ],
)
def test_server_binary_from_a_process_command_line(command: str, engine: str | None) -> None:
    assert server_binary(command) == engine


def _pgdata(container: ContainerInfo = PRIVATE, volume: str = "acme_pgdata") -> DataDir:
    return DataDir(container, volume, "", "postgres", ("PG_VERSION",))


def _running(*names: str) -> Callable[[], ServerBinaries]:
    return lambda: ServerBinaries(found=names, source="running")


def _never() -> ServerBinaries:
    pytest.fail("the server binaries were looked for without a reason")


def test_env_marker_and_binary_agree_on_postgres() -> None:
    env = {"POSTGRES_PASSWORD": "pgpw", "POSTGRES_DB": "shop"}
    found = detect_from_signals(PRIVATE, env, [_pgdata()], _running("postgres"))
    database = found.database
    assert database is not None and found.suspect is None
    assert database.engine == "postgres"
    assert database.credentials == DatabaseCredentials("postgres", Secret("pgpw"), ("shop",))
    assert database.detected_by == (
        "detected postgres from env POSTGRES_PASSWORD, POSTGRES_DB, "
        "PG_VERSION in volume acme_pgdata, binary postgres (running)"
    )
    assert "pgpw" not in database.detected_by


@pytest.mark.parametrize(
    ("env", "dirs", "binaries", "engine"),
    [
        # The variables and one more signal are enough.
        ({"POSTGRES_PASSWORD": "x"}, [_pgdata()], ServerBinaries(), "postgres"),
        ({"POSTGRES_PASSWORD": "x"}, [], ServerBinaries(("postgres",), "running"), "postgres"),
        ({"POSTGRES_PASSWORD": "x"}, [], ServerBinaries(("postgres",), "command"), "postgres"),
        # MariaDB when anything says MariaDB; the MySQL family's variables are shared.
        ({"MYSQL_ROOT_PASSWORD": "x"},
         [DataDir(PRIVATE, "v", "", "mariadb", ("aria_log_control", "ibdata1"))],
         ServerBinaries(("mysqld",), "running"), "mariadb"),
        ({"MYSQL_ROOT_PASSWORD": "x"}, [], ServerBinaries(("mariadbd",), "running"), "mariadb"),
        ({"MYSQL_ROOT_PASSWORD": "x"}, [DataDir(PRIVATE, "v", "", "mysql", ("ibdata1",))],
         ServerBinaries(("mysqld",), "running"), "mysql"),
        ({"MONGO_INITDB_ROOT_USERNAME": "a", "MONGO_INITDB_ROOT_PASSWORD": "b"},
         [DataDir(PRIVATE, "v", "data/db", "mongo", ("WiredTiger",))], ServerBinaries(), "mongo"),
        # The official images' own variables (a build FROM them) count too.
        ({"PG_MAJOR": "16"}, [], ServerBinaries(("postgres",), "running"), "postgres"),
        ({"POSTGRES_PASSWORD_FILE": "/run/secrets/pg"}, [_pgdata()], ServerBinaries(), "postgres"),
    ],
)  # fmt: skip
def test_agreeing_signals_make_a_database(
    env: dict[str, str], dirs: list[DataDir], binaries: ServerBinaries, engine: str
) -> None:
    found = detect_from_signals(PRIVATE, env, dirs, lambda: binaries)
    assert found.database is not None and found.suspect is None
    assert found.database.engine == engine


@pytest.mark.parametrize(
    ("env", "dirs", "binaries", "engine", "problem"),
    [
        # A data directory alone: no credentials, maybe not even a server.
        ({}, [_pgdata()], ServerBinaries(), "postgres",
         "only PG_VERSION in volume acme_pgdata, no PostgreSQL environment variables"),
        # An all-in-one image running its own server, without the variables.
        ({}, [_pgdata()], ServerBinaries(("postgres",), "running"), "postgres",
         "no PostgreSQL environment variables"),
        # The variables of one engine, the data directory of another.
        ({"POSTGRES_PASSWORD": "x"}, [DataDir(PRIVATE, "v", "", "mysql", ("ibdata1",))],
         ServerBinaries(), None, "the signals disagree"),
        ({"POSTGRES_PASSWORD": "x"}, [_pgdata()], ServerBinaries(("mongod",), "running"), None,
         "the signals disagree"),
        # The processes were listed and no server is among them.
        ({"POSTGRES_PASSWORD": "x"}, [_pgdata()], ServerBinaries((), "running"), "postgres",
         "but no database server process runs in it"),
    ],
)  # fmt: skip
def test_too_few_or_disagreeing_signals_make_a_suspect(
    env: dict[str, str], dirs: list[DataDir], binaries: ServerBinaries, engine: str | None,
    problem: str,
) -> None:  # fmt: skip
    found = detect_from_signals(PRIVATE, env, dirs, lambda: binaries)
    assert found.database is None and found.suspect is not None
    assert found.suspect.engine == engine
    assert problem in found.suspect.problem
    assert found.suspect.running_server == (bool(binaries.found) and binaries.source == "running")


def test_app_containers_with_client_variables_are_no_database() -> None:
    # Nextcloud-like: POSTGRES_* to connect with, its own processes.
    app = ContainerInfo("a" * 64, "acme-app-1", "app", "nextcloud:29", "running")
    env = {"POSTGRES_PASSWORD": "x", "POSTGRES_HOST": "db", "POSTGRES_DB": "nc"}
    found = detect_from_signals(app, env, [], _running("apache2"))
    assert found == SignalDetection()
    # Nothing to go on: the engine is not even asked for the processes.
    assert detect_from_signals(app, {"HOME": "/root"}, [], _never) == SignalDetection()
    one_off = ContainerInfo("o" * 64, "acme-init", "init", "x", "exited", one_off=True)
    assert detect_from_signals(one_off, env, [_pgdata(one_off)], _never) == SignalDetection()


# -- Warnings ------------------------------------------------------------------------


def _signal_app(
    env: dict[str, str], state: str = "running", binaries: ServerBinaries | None = None
) -> AppInfo:
    container = replace(PRIVATE, state=state)
    dirs = [_pgdata(container)]
    found = detect_from_signals(container, env, dirs, lambda: binaries or ServerBinaries())
    return AppInfo(
        "acme", (container,), (), (found.database,) if found.database else (), (),
        data_dirs=tuple(dirs), suspects=(found.suspect,) if found.suspect else (),
    )  # fmt: skip


def test_a_live_data_directory_without_a_dump_is_a_warning_saying_what_to_do() -> None:
    app = _signal_app({})
    (warning,) = undumped_warnings(app, consistency="live")
    assert warning.startswith(
        "volume acme_pgdata (container acme-db-1) holds a live PostgreSQL data directory "
        "(PG_VERSION) but gets no database dump: only PG_VERSION in volume acme_pgdata, "
        "no PostgreSQL environment variables"
    )
    assert 'database_overrides of app acme (e.g. {"db": {"engine": "postgres"}})' in warning
    assert "consistency=stop" in warning
    assert undumped_warnings(app, consistency="pause") == [warning]
    # Read at rest: stopped for the copy, or not running at all.
    assert undumped_warnings(app, consistency="stop") == []
    assert undumped_warnings(_signal_app({}, state="exited"), consistency="live") == []


def test_no_warning_when_the_data_directory_is_dumped() -> None:
    app = _signal_app({"POSTGRES_PASSWORD": "x"})
    assert [d.engine for d in app.databases] == ["postgres"]
    assert undumped_warnings(app, consistency="live") == []
    # ... unless the app's policy turns dumps off.
    (warning,) = undumped_warnings(app, consistency="live", include_databases=False)
    assert "include_databases is off" in warning and "acme_pgdata" in warning
    # A second container mounting the dumped volume (a sidecar) is no reason to warn.
    sidecar = ContainerInfo("s" * 64, "acme-sidecar-1", "sidecar", "busybox", "running")
    shared = replace(app, data_dirs=(*app.data_dirs, _pgdata(sidecar)))
    assert undumped_warnings(shared, consistency="live") == []


def test_a_running_server_without_a_dump_or_a_volume_is_a_warning() -> None:
    container = replace(PRIVATE, name="acme-all-in-one-1", service="web")
    found = detect_from_signals(
        container, {}, [DataDir(container, "acme_other", "", "mongo", ("mongod.lock",))],
        _running("mongod"),
    )  # fmt: skip
    assert found.suspect is not None and found.suspect.running_server
    app = AppInfo("acme", (container,), (), (), (), suspects=(found.suspect,))
    (warning,) = undumped_warnings(app, consistency="live")
    assert warning.startswith("container acme-all-in-one-1 runs a MongoDB server")
    assert '{"web": {"engine": "mongo"}}' in warning


def test_overrides_win_over_signals() -> None:
    app = _signal_app({})
    # Skipped by the operator: no database, and nothing to warn about.
    skipped = apply_overrides(app, {"db": DatabaseOverride(skip=True)})
    assert skipped.databases == () and skipped.suspects == () and skipped.data_dirs == ()
    assert undumped_warnings(skipped, consistency="live") == []
    detected = _signal_app({"POSTGRES_PASSWORD": "x"})
    assert apply_overrides(detected, {"db": DatabaseOverride(skip=True)}).databases == ()
    # Credentials named by the override, the engine from the signals.
    named = apply_overrides(detected, {"db": DatabaseOverride(user="backup")})
    assert named.databases[0].credentials.user == "backup"
    assert named.databases[0].detected_by.startswith("detected postgres from env")
    # An engine named by the override replaces what the signals say.
    forced = apply_overrides(detected, {"db": DatabaseOverride(engine="mysql")})
    assert forced.databases[0].engine == "mysql"
    assert forced.databases[0].detected_by == "engine mysql set by database_overrides"
