"""Restoring dumps into a database container, and waiting for it to be
ready first: one entry point for every engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import docker

from engine.dumps.mongo import restore_mongo, wait_mongo
from engine.dumps.mysql import restore_mysql, wait_mysql
from engine.dumps.postgres import restore_postgres, wait_postgres
from engine.dumps.types import (
    DatabaseRestoreError,
    DumpFile,
    require_running,
    with_password_file,
)
from engine.inventory import DatabaseInfo
from engine.progress import ProgressCallback, no_progress

Restorer = Callable[[docker.DockerClient, DatabaseInfo, Sequence[DumpFile], ProgressCallback], None]
Waiter = Callable[[docker.DockerClient, DatabaseInfo, float], None]

_RESTORERS: dict[str, Restorer] = {
    "mysql": restore_mysql,
    "mariadb": restore_mysql,
    "postgres": restore_postgres,
    "mongo": restore_mongo,
}
_WAITERS: dict[str, Waiter] = {
    "mysql": wait_mysql,
    "mariadb": wait_mysql,
    "postgres": wait_postgres,
    "mongo": wait_mongo,
}


def restore_database(
    client: docker.DockerClient,
    db: DatabaseInfo,
    dumps: Sequence[DumpFile],
    progress: ProgressCallback = no_progress,
) -> None:
    """Restore DUMPS (those of one database container, as dump_database made
    them) into DB's container, which must be running and ready (see
    wait_until_ready). Raises DatabaseRestoreError, never with a secret."""
    if db.engine not in _RESTORERS:
        raise DatabaseRestoreError(f"no restore for database engine {db.engine!r}")
    db = with_password_file(client, db, DatabaseRestoreError)
    _RESTORERS[db.engine](client, db, dumps, progress)


def wait_until_ready(client: docker.DockerClient, db: DatabaseInfo, timeout: float = 120) -> None:
    """Return once DB's server accepts connections with DB's credentials;
    raise DatabaseRestoreError at once if the container is not running or
    the credentials are refused, or after TIMEOUT seconds."""
    if db.engine not in _WAITERS:
        raise DatabaseRestoreError(f"no readiness check for database engine {db.engine!r}")
    deadline = time.monotonic() + timeout
    while True:  # a `*_FILE` password can be read only once the container runs
        require_running(client, db)
        try:
            db = with_password_file(client, db, DatabaseRestoreError)
            break
        except DatabaseRestoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    _WAITERS[db.engine](client, db, max(1.0, deadline - time.monotonic()))
