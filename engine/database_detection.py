"""Which containers of an app are databases, and how to log in to them.

The engine is decided by the image's repository name (the last path
component), so registries, namespaces (bitnami/, pgvector/, a local build's
own), tags and digests don't matter, and a sidecar such as mysql-router or
postgres-exporter is not taken for a database. Credentials come from the
container's own environment, read as the images' entrypoints read it.

`*_FILE` variables (Docker secrets) name a file inside the container: the
caller passes a FileReader (engine.docker_client.container_file_reader reads
it with `docker exec cat`). Without one, or when the read fails, the path is
kept in DatabaseCredentials.password_file for `resolve_password_file` later.

A private or renamed image (registry.example/acme/pgsrv) says nothing, so a
container is also judged by three other signals: the engines' environment
variables, data-directory markers in its volumes (PG_VERSION; ibdata1,
mysql/, aria_log_control; WiredTiger, mongod.lock) and the server binary it
runs. Where the variables and at least one other signal name the same engine,
and nothing names another, it is that engine (`detect_from_signals`). The
variables are required: the credentials come from them, as the official
entrypoints read them; a data directory or a server alone (an all-in-one
image running its own PostgreSQL) is a DatabaseSuspect, and a backup that
copies such a live data directory raw carries a warning (`undumped_warnings`).

An app may override detection per service with a DatabaseOverride; an
override always wins over detection."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from engine.errors import EngineError
from engine.inventory import (
    AppInfo,
    ContainerInfo,
    DatabaseCredentials,
    DatabaseEngine,
    DatabaseInfo,
    DatabaseSuspect,
    DataDir,
)
from engine.secret import Secret

log = logging.getLogger(__name__)

# Reads a file inside the database's container; raises EngineError.
FileReader = Callable[[str], str]

# Mongo started without MONGO_INITDB_ROOT_* runs without authentication.
NO_AUTH_USER = ""

# Who to log in as when nothing in the environment says otherwise.
DEFAULT_USER: dict[DatabaseEngine, str] = {
    "mysql": "root",
    "mariadb": "root",
    "postgres": "postgres",
    "mongo": NO_AUTH_USER,
}

_ENGINE_BY_REPOSITORY: dict[str, DatabaseEngine] = {
    "mysql": "mysql",
    "mysql-server": "mysql",  # mysql/mysql-server, Oracle's build
    "percona": "mysql",
    "percona-server": "mysql",
    "mariadb": "mariadb",
    "mariadb-galera": "mariadb",  # bitnami
    "postgres": "postgres",  # also supabase/postgres, localtest/postgres
    "postgresql": "postgres",  # bitnami
    "postgresql-repmgr": "postgres",  # bitnami
    "pgvector": "postgres",
    "postgis": "postgres",
    "timescaledb": "postgres",
    "timescaledb-ha": "postgres",
    "mongo": "mongo",
    "mongodb": "mongo",  # bitnami
    "mongodb-community-server": "mongo",
    "percona-server-mongodb": "mongo",
}


def repository_name(image: str) -> str:
    """The last path component of an image reference, without registry, tag
    or digest: "ghcr.io/x/bitnami/mysql:8.0@sha256:..." -> "mysql"."""
    without_digest = image.strip().lower().split("@", 1)[0]
    # A registry's port is in the first component, a tag only in the last.
    return without_digest.rsplit("/", 1)[-1].split(":", 1)[0]


def detect_engine(image: str) -> DatabaseEngine | None:
    return _ENGINE_BY_REPOSITORY.get(repository_name(image))


def detect_database(
    container: ContainerInfo,
    env: Mapping[str, str],
    read_file: FileReader | None = None,
    engine: DatabaseEngine | None = None,
) -> DatabaseInfo | None:
    """The database CONTAINER runs, with credentials from its environment ENV;
    None when its image is no database. ENGINE forces the engine (an app's
    override for an image detection does not know). One-off containers are
    not the running state: never a database to dump."""
    if container.one_off:
        return None
    forced = engine is not None
    engine = engine or detect_engine(container.image)
    if engine is None:
        return None
    settings = _Settings(env, read_file, container.name)
    if engine in ("mysql", "mariadb"):
        credentials = _mysql_credentials(settings, engine)
    elif engine == "postgres":
        credentials = _postgres_credentials(settings)
    else:
        credentials = _mongo_credentials(settings)
    detected_by = (
        f"engine {engine} set by database_overrides" if forced else f"image {container.image}"
    )
    return DatabaseInfo(
        container=container, engine=engine, credentials=credentials, detected_by=detected_by
    )


def resolve_password_file(database: DatabaseInfo, read_file: FileReader) -> DatabaseInfo:
    """DATABASE with its password read from its password_file, when detection
    could not read it (the container was stopped, or no reader was given).
    Raises EngineError when the file cannot be read."""
    credentials = database.credentials
    if credentials.password is not None or credentials.password_file is None:
        return database
    value = read_file(credentials.password_file)
    password = Secret(value) if value else None
    return replace(database, credentials=replace(credentials, password=password))


# -- Reading the environment --------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    value: str | None  # None: only known as a file that could not be read
    file: str | None = None  # the *_FILE path it came from


class _Settings:
    """A container's environment, read as the official entrypoints read it:
    NAME, or the content of the file NAME_FILE names; empty means unset."""

    def __init__(self, env: Mapping[str, str], read_file: FileReader | None, where: str) -> None:
        self._env = env
        self._read_file = read_file
        self._where = where

    def setting(self, *names: str) -> _Setting | None:
        """The first of NAMES that is set, directly or through NAME_FILE."""
        for name in names:
            if self._env.get(name):
                return _Setting(self._env[name])
            path = self._env.get(f"{name}_FILE")
            if path:
                return _Setting(self._read(path), path)
        return None

    def text(self, *names: str) -> str | None:
        found = self.setting(*names)
        return found.value if found is not None and found.value else None

    def is_set(self, *names: str) -> bool:
        """Whether any of NAMES is given, without reading a file."""
        return any(self._env.get(name) or self._env.get(f"{name}_FILE") for name in names)

    def _read(self, path: str) -> str | None:
        if self._read_file is None:
            return None
        try:
            return self._read_file(path)
        except EngineError as exc:
            # The message names the path and the failure, never the content.
            log.warning("%s: %s; the value stays unresolved", self._where, exc)
            return None


def _credentials(
    user: str, password: _Setting | None, databases: Iterable[str | None]
) -> DatabaseCredentials:
    return DatabaseCredentials(
        user=user,
        password=Secret(password.value) if password is not None and password.value else None,
        databases=tuple(name for name in databases if name),
        password_file=password.file if password is not None else None,
    )


def _mysql_credentials(env: _Settings, engine: DatabaseEngine) -> DatabaseCredentials:
    # The mariadb image reads MARIADB_* first and falls back to MYSQL_*;
    # bitnami's images use the prefix of their own name.
    prefixes = ("MARIADB", "MYSQL") if engine == "mariadb" else ("MYSQL", "MARIADB")

    def names(suffix: str) -> tuple[str, ...]:
        return tuple(f"{prefix}_{suffix}" for prefix in prefixes)

    databases = [env.text(*names("DATABASE"))]
    root_user = env.text(*names("ROOT_USER")) or "root"  # bitnami may rename root
    root_password = env.setting(*names("ROOT_PASSWORD"))
    # Official images: any non-empty value allows it; bitnami: ALLOW_EMPTY_PASSWORD=yes.
    empty_root_allowed = env.is_set(
        *names("ALLOW_EMPTY_PASSWORD"), *names("ALLOW_EMPTY_ROOT_PASSWORD")
    ) or (env.text("ALLOW_EMPTY_PASSWORD") or "").lower() in ("yes", "true", "1")
    # Root first: it sees every database, the app user only its own.
    if root_password is not None or empty_root_allowed:
        return _credentials(root_user, root_password, databases)
    user = env.text(*names("USER"))
    password = env.setting(*names("PASSWORD"))
    if user and password is not None:
        return _credentials(user, password, databases)
    # A random root password (printed once in the logs) and no app user:
    # nothing to log in with from here.
    return _credentials(root_user, None, databases)


def _postgres_credentials(env: _Settings) -> DatabaseCredentials:
    bitnami = ("POSTGRESQL_USERNAME", "POSTGRESQL_PASSWORD", "POSTGRESQL_POSTGRES_PASSWORD")
    if env.is_set(*bitnami, "POSTGRESQL_DATABASE"):
        databases = [env.text("POSTGRESQL_DATABASE")]
        # The postgres superuser's own password, set when the app user is another one.
        superuser_password = env.setting("POSTGRESQL_POSTGRES_PASSWORD")
        if superuser_password is not None:
            return _credentials("postgres", superuser_password, databases)
        user = env.text("POSTGRESQL_USERNAME") or DEFAULT_USER["postgres"]
        return _credentials(user, env.setting("POSTGRESQL_PASSWORD"), databases)
    # POSTGRES_USER is the superuser (often the app id); no password means
    # POSTGRES_HOST_AUTH_METHOD=trust.
    user = env.text("POSTGRES_USER") or DEFAULT_USER["postgres"]
    return _credentials(user, env.setting("POSTGRES_PASSWORD"), [env.text("POSTGRES_DB")])


def _mongo_credentials(env: _Settings) -> DatabaseCredentials:
    bitnami = ("MONGODB_ROOT_USER", "MONGODB_ROOT_PASSWORD", "MONGODB_USERNAME")
    if env.is_set(*bitnami, "MONGODB_PASSWORD", "MONGODB_DATABASE"):
        databases = [env.text("MONGODB_DATABASE")]
        root_password = env.setting("MONGODB_ROOT_PASSWORD")
        if root_password is not None:
            return _credentials(env.text("MONGODB_ROOT_USER") or "root", root_password, databases)
        user, password = env.text("MONGODB_USERNAME"), env.setting("MONGODB_PASSWORD")
        if user and password is not None:
            return _credentials(user, password, databases)
        return _credentials(NO_AUTH_USER, None, databases)
    databases = [env.text("MONGO_INITDB_DATABASE")]
    user = env.text("MONGO_INITDB_ROOT_USERNAME")
    password = env.setting("MONGO_INITDB_ROOT_PASSWORD")
    # The image enables authentication only when both are given.
    if user and password is not None:
        return _credentials(user, password, databases)
    return _credentials(NO_AUTH_USER, None, databases)


# -- Detection from other signals: private or renamed images --------------------

ENGINE_NAMES: dict[DatabaseEngine, str] = {
    "mysql": "MySQL",
    "mariadb": "MariaDB",
    "postgres": "PostgreSQL",
    "mongo": "MongoDB",
}

# What the entrypoints read, and what the official images set themselves
# (PG_MAJOR, MARIADB_VERSION, MONGO_VERSION...): a build FROM them keeps those.
# App containers carry some of these too (POSTGRES_PASSWORD to connect with),
# so the variables alone never make a database.
_ENV_SIGNALS: dict[DatabaseEngine, tuple[str, ...]] = {
    "postgres": (
        "POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_HOST_AUTH_METHOD",
        "POSTGRES_INITDB_ARGS", "PGDATA", "PG_MAJOR", "PG_VERSION", "POSTGRESQL_USERNAME",
        "POSTGRESQL_PASSWORD", "POSTGRESQL_DATABASE", "POSTGRESQL_POSTGRES_PASSWORD",
    ),
    "mariadb": (
        "MARIADB_ROOT_PASSWORD", "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD",
        "MARIADB_RANDOM_ROOT_PASSWORD", "MARIADB_DATABASE", "MARIADB_USER", "MARIADB_PASSWORD",
        "MARIADB_ROOT_USER", "MARIADB_VERSION", "MARIADB_MAJOR",
    ),
    "mysql": (
        "MYSQL_ROOT_PASSWORD", "MYSQL_ALLOW_EMPTY_PASSWORD", "MYSQL_RANDOM_ROOT_PASSWORD",
        "MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_ROOT_USER", "MYSQL_MAJOR",
        "MYSQL_VERSION",
    ),
    "mongo": (
        "MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD", "MONGO_INITDB_DATABASE",
        "MONGO_VERSION", "MONGO_MAJOR", "MONGODB_ROOT_USER", "MONGODB_ROOT_PASSWORD",
        "MONGODB_USERNAME", "MONGODB_PASSWORD", "MONGODB_DATABASE",
    ),
}  # fmt: skip

# Server binaries (not clients, routers or exporters: mongos, mysql-router).
_SERVER_BINARIES: dict[str, DatabaseEngine] = {
    "postgres": "postgres",
    "postmaster": "postgres",
    "mariadbd": "mariadb",
    "mariadbd-safe": "mariadb",
    "mysqld": "mysql",  # MariaDB before 11 too: same family
    "mysqld_safe": "mysql",
    "mongod": "mongo",
}
SERVER_BINARIES = tuple(_SERVER_BINARIES)

# Files of MySQL's and MariaDB's system schema (the `mysql/` directory).
_MYSQL_SYSTEM_FILES = (".frm", ".myd", ".myi", ".mad", ".mai", ".ibd", ".csv", ".csm", ".opt")
_SCAN_DEPTH = 2  # the volume's root and two levels down (bitnami: /bitnami/mongodb/data/db)
_SCAN_DIRECTORIES = 64  # at most this many directories per volume
_SCAN_ENTRIES = 10_000  # names read per directory


def family(engine: DatabaseEngine) -> DatabaseEngine:
    """MariaDB is of MySQL's family: the same dump tools, the same markers."""
    return "mysql" if engine == "mariadb" else engine


def server_binary(command: str) -> DatabaseEngine | None:
    """The engine whose server COMMAND (a process's command line, or an
    executable's path) starts; None for anything else. PostgreSQL's
    processes rename themselves "postgres: checkpointer"."""
    words = command.split(None, 1)
    if not words:
        return None
    return _SERVER_BINARIES.get(words[0].rsplit("/", 1)[-1].rstrip(":"))


@dataclass(frozen=True)
class ServerBinaries:
    """Which database servers a container runs, as far as can be seen."""

    found: tuple[str, ...] = ()  # binary names, e.g. ("postgres",)
    # "running": its processes were listed, so nothing found means none runs;
    # "command": only its configured command was read (stopped, or no listing).
    source: str = "command"

    @property
    def none_runs(self) -> bool:
        return self.source == "running" and not self.found


def find_data_dirs(root: str) -> list[tuple[str, DatabaseEngine, tuple[str, ...]]]:
    """(path inside ROOT, engine, markers) of every directory under ROOT that
    looks like a database server's data directory: ROOT itself and up to two
    levels below, at most 64 directories, never through a symlink. A data
    directory's own subdirectories are not searched. Unreadable parts are
    skipped: a marker not seen is a warning not given, never a failed backup."""
    found: list[tuple[str, DatabaseEngine, tuple[str, ...]]] = []
    pending: list[tuple[str, int]] = [("", 0)]
    visited = 0
    while pending and visited < _SCAN_DIRECTORIES:
        relative, depth = pending.pop(0)
        visited += 1
        path = os.path.join(root, relative) if relative else root
        directories: list[str] = []
        files: set[str] = set()
        try:
            with os.scandir(path) as entries:
                for count, entry in enumerate(entries):
                    if count >= _SCAN_ENTRIES:
                        break
                    if entry.is_dir(follow_symlinks=False):
                        directories.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        files.add(entry.name)
        except OSError:
            continue
        here = _markers(path, files, set(directories))
        if here:
            found += [(relative, engine, markers) for engine, markers in here]
            continue
        if depth < _SCAN_DEPTH:
            pending += [(os.path.join(relative, name), depth + 1) for name in sorted(directories)]
    return found


def _markers(
    path: str, files: set[str], directories: set[str]
) -> list[tuple[DatabaseEngine, tuple[str, ...]]]:
    groups: list[tuple[DatabaseEngine, tuple[str, ...]]] = []
    if "PG_VERSION" in files:
        groups.append(("postgres", ("PG_VERSION",)))
    mysql = [name for name in ("aria_log_control", "ibdata1") if name in files]
    if "mysql" in directories and _is_mysql_schema(os.path.join(path, "mysql")):
        mysql.append("mysql/")
    if mysql:
        groups.append(("mariadb" if "aria_log_control" in mysql else "mysql", tuple(mysql)))
    mongo = tuple(name for name in ("WiredTiger", "mongod.lock") if name in files)
    if mongo:
        groups.append(("mongo", mongo))
    return groups


def _is_mysql_schema(path: str) -> bool:
    """Whether PATH holds system tables (not just any directory named mysql)."""
    try:
        with os.scandir(path) as entries:
            for count, entry in enumerate(entries):
                if count >= 200:
                    break
                if entry.name.lower().endswith(_MYSQL_SYSTEM_FILES):
                    return True
    except OSError:
        pass
    return False


def environment_signals(env: Mapping[str, str]) -> dict[DatabaseEngine, tuple[str, ...]]:
    """The engines whose variables ENV sets (directly or as NAME_FILE), with them."""
    found: dict[DatabaseEngine, tuple[str, ...]] = {}
    for engine, names in _ENV_SIGNALS.items():
        present = tuple(name for name in names if env.get(name) or env.get(f"{name}_FILE"))
        if present:
            found[engine] = present
    return found


@dataclass(frozen=True)
class SignalDetection:
    database: DatabaseInfo | None = None
    suspect: DatabaseSuspect | None = None


def detect_from_signals(
    container: ContainerInfo,
    env: Mapping[str, str],
    data_dirs: Sequence[DataDir],
    binaries: Callable[[], ServerBinaries],
    read_file: FileReader | None = None,
) -> SignalDetection:
    """CONTAINER, whose image is no known database image, judged by its
    environment ENV, the data directories found in its volumes and the
    server BINARIES it runs (called only when ENV or DATA_DIRS give a reason
    to look: it may cost a call to the engine).

    A database when the variables and at least one other signal name the
    same engine and no signal names another; a suspect when a data directory
    or a running server is seen but that is not enough; otherwise nothing
    (an app's own POSTGRES_PASSWORD to connect with is no database)."""
    if container.one_off:
        return SignalDetection()
    env_found = environment_signals(env)
    if not env_found and not data_dirs:
        return SignalDetection()
    seen = binaries()
    binary_engines = [engine for name in seen.found if (engine := server_binary(name))]
    evidence = [f"env {', '.join(names)}" for names in env_found.values()]
    evidence += [
        f"{', '.join(d.markers)} in volume {d.volume}" + (f" ({d.path}/)" if d.path else "")
        for d in data_dirs
    ]
    evidence += [f"binary {name}" + (" (running)" if seen.source == "running" else "")
                 for name in seen.found]  # fmt: skip
    env_families = {family(engine) for engine in env_found}
    others = {family(d.engine) for d in data_dirs} | {family(e) for e in binary_engines}
    mentioned = [*env_found, *(d.engine for d in data_dirs), *binary_engines]
    # MariaDB when anything says so (its variables, aria_log_control, mariadbd).
    guess = _with_mariadb(next(iter(others)), mentioned) if len(others) == 1 else None
    if guess is not None and others <= env_families and not seen.none_runs:
        engine = guess
        database = detect_database(container, env, read_file, engine=engine)
        if database is None:
            return SignalDetection()
        detected_by = f"detected {engine} from {', '.join(evidence)}"
        return SignalDetection(database=replace(database, detected_by=detected_by))
    if not data_dirs and not binary_engines:
        return SignalDetection()  # only variables: an app's client settings
    if len(others | env_families) > 1:
        guess = None
        problem = "the signals disagree: " + "; ".join(evidence)
    elif not env_found and guess is not None:
        problem = (
            f"only {'; '.join(evidence)}, no {ENGINE_NAMES[guess]} environment variables "
            "(no credentials to dump it with)"
            + (" and no database server process in it" if seen.none_runs else "")
        )
    else:
        problem = f"{'; '.join(evidence)}, but no database server process runs in it"
    suspect = DatabaseSuspect(
        container=container, engine=guess, evidence=tuple(evidence), problem=problem,
        running_server=bool(binary_engines) and seen.source == "running",
    )  # fmt: skip
    return SignalDetection(suspect=suspect)


def _with_mariadb(engine: DatabaseEngine, mentioned: Iterable[DatabaseEngine]) -> DatabaseEngine:
    return "mariadb" if engine == "mysql" and "mariadb" in mentioned else engine


# -- Warnings for live data that gets no dump ------------------------------------

LIVE_STATES = ("running", "paused", "restarting")


def undumped_warnings(
    app: AppInfo, *, consistency: str, include_databases: bool = True
) -> list[str]:
    """What a backup of APP must say about database data it copies as raw,
    live files: each volume holding a data directory that a running container
    mounts and no dumped database does, and each running database server that
    gets no dump. Nothing with consistency=stop: the files are read at rest."""
    if consistency == "stop":
        return []
    dumped = {d.container.id for d in app.databases} if include_databases else set()
    detected = {d.container.id for d in app.databases}
    suspects = {s.container.id: s for s in app.suspects}
    by_volume: dict[str, list[DataDir]] = {}
    for data_dir in app.data_dirs:
        by_volume.setdefault(data_dir.volume, []).append(data_dir)
    warnings: list[str] = []
    warned: set[str] = set()
    for volume in sorted(by_volume):
        dirs = by_volume[volume]
        if any(d.container.id in dumped for d in dirs):
            continue  # its server's dump is in the backup
        live = [d for d in dirs if d.container.state in LIVE_STATES]
        if not live:
            continue  # no server runs on it: the files are at rest
        first = live[0]
        names = sorted({d.container.name for d in live})
        markers = sorted({m for d in live for m in d.markers})
        places = sorted({f"{d.path}/" for d in live if d.path})
        where = f" under {', '.join(places)}" if places else ""
        if first.container.id in detected:
            why = "include_databases is off for this app"
            remedy = "turn include_databases on for it, or back it up with consistency=stop"
        else:
            suspect = suspects.get(first.container.id)
            why = suspect.problem if suspect is not None else "nothing else shows a server"
            remedy = _remedy(app.app_id, first.container.service, first.engine)
        warnings.append(
            f"volume {volume} (container {', '.join(names)}) holds a live "
            f"{ENGINE_NAMES[first.engine]} data directory ({', '.join(markers)}){where} "
            f"but gets no database dump: {why}. Its files are copied raw while the server "
            f"may write them, which may not restore consistently; {remedy}."
        )
        warned.update(d.container.id for d in live)
    for suspect in app.suspects:
        container = suspect.container
        if container.id in dumped or container.id in warned or not suspect.running_server:
            continue
        if container.state not in LIVE_STATES:
            continue
        engine = suspect.engine
        what = f"a {ENGINE_NAMES[engine]} server" if engine is not None else "a database server"
        warnings.append(
            f"container {container.name} runs {what} but gets no database dump: "
            f"{suspect.problem}; {_remedy(app.app_id, container.service, engine)}."
        )
    return warnings


def _remedy(app_id: str, service: str, engine: DatabaseEngine | None) -> str:
    example = json.dumps({service: {"engine": engine or "postgres|mysql|mariadb|mongo"}})
    return (
        f"name its engine in the database_overrides of app {app_id} (e.g. {example}), "
        "or back the app up with consistency=stop"
    )


# -- Overrides ------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseOverride:
    """How one service of an app departs from detection. Fields left None
    keep what detection found."""

    skip: bool = False  # not a database to dump (e.g. a read replica, a cache)
    engine: DatabaseEngine | None = None  # e.g. for an image detection doesn't know
    user: str | None = None
    password: Secret | None = None
    databases: tuple[str, ...] | None = None


def apply_overrides(app: AppInfo, overrides: Mapping[str, DatabaseOverride]) -> AppInfo:
    """APP with its databases changed by OVERRIDES, keyed by service name.
    Every container of an overridden service is affected; one-off containers
    never become databases."""
    services = {container.service for container in app.containers}
    unknown = sorted(set(overrides) - services)
    if unknown:
        log.warning("app %s: overrides name no service of the app: %s", app.app_id, unknown)
    databases: list[DatabaseInfo] = []
    for database in app.databases:
        changed = _override(database.container, database, overrides.get(database.container.service))
        if changed is not None:
            databases.append(changed)
    detected = {database.container.id for database in app.databases}
    for container in app.containers:
        override = overrides.get(container.service)
        if container.id in detected or container.one_off or override is None:
            continue
        forced = _override(container, None, override)
        if forced is not None:
            databases.append(forced)
    databases.sort(key=lambda database: database.container.name)
    # A skipped service is, by the operator's word, no database to warn about.
    skipped = {service for service, override in overrides.items() if override.skip}
    dumped = {database.container.id for database in databases}
    return replace(
        app,
        databases=tuple(databases),
        data_dirs=tuple(d for d in app.data_dirs if d.container.service not in skipped),
        suspects=tuple(
            s for s in app.suspects
            if s.container.service not in skipped and s.container.id not in dumped
        ),
    )  # fmt: skip


def _override(
    container: ContainerInfo, database: DatabaseInfo | None, override: DatabaseOverride | None
) -> DatabaseInfo | None:
    if override is None:
        return database
    if override.skip:
        return None
    engine = override.engine or (database.engine if database is not None else None)
    if engine is None:
        return None  # credentials for a container that is no database: nothing to dump
    credentials = (
        database.credentials
        if database is not None
        else DatabaseCredentials(DEFAULT_USER[engine], None)
    )
    if override.user is not None:
        credentials = replace(credentials, user=override.user)
    if override.password is not None:
        credentials = replace(credentials, password=override.password, password_file=None)
    if override.databases is not None:
        credentials = replace(credentials, databases=tuple(override.databases))
    detected_by = (
        database.detected_by
        if database is not None and override.engine is None
        else f"engine {engine} set by database_overrides"
    )
    return DatabaseInfo(
        container=container, engine=engine, credentials=credentials, detected_by=detected_by
    )
