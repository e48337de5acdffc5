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

An app may override detection per service with a DatabaseOverride."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from engine.errors import EngineError
from engine.inventory import (
    AppInfo,
    ContainerInfo,
    DatabaseCredentials,
    DatabaseEngine,
    DatabaseInfo,
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
    return DatabaseInfo(container=container, engine=engine, credentials=credentials)


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
    return replace(app, databases=tuple(databases))


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
    return DatabaseInfo(container=container, engine=engine, credentials=credentials)
