"""Database dumps inside app containers and their restore.

Each database container is dumped with its own tools through `docker exec`
(Engine API), stdout streamed to a spool file: `dump_database` returns one
DumpFile per file, which the archive stores as
`databases/<container>/<database>.<ext>`. `verify_dump` checks a dump file
with or without a container; `restore_database` feeds dumps back.

Credentials never appear in any argv, log or exception text: they go in the
exec environment (MYSQL_PWD, PGPASSWORD) or, for MongoDB, in a 0600 file
inside the container that is removed afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker

from engine.dumps.mongo import dump_mongo, verify_mongo_archive
from engine.dumps.mysql import dump_mysql, verify_sql_dump
from engine.dumps.postgres import (
    dump_postgres,
    pg_restore_list,
    verify_globals,
    verify_pg_custom,
)
from engine.dumps.restore import restore_database, wait_until_ready
from engine.dumps.types import DatabaseRestoreError, DumpFile, DumpFormat, with_password_file
from engine.errors import DatabaseDumpError
from engine.inventory import DatabaseInfo
from engine.progress import ProgressCallback, no_progress

__all__ = [
    "DatabaseRestoreError",
    "DumpFile",
    "DumpFormat",
    "dump_database",
    "restore_database",
    "verify_dump",
    "wait_until_ready",
]

_DUMPERS = {
    "mysql": dump_mysql,
    "mariadb": dump_mysql,
    "postgres": dump_postgres,
    "mongo": dump_mongo,
}


def dump_database(
    client: docker.DockerClient,
    db: DatabaseInfo,
    spool_dir: Path,
    progress: ProgressCallback = no_progress,
) -> list[DumpFile]:
    """Dump every user database of DB's server into SPOOL_DIR/<container>/,
    one file per database (plus the roles for PostgreSQL; one archive of
    everything for MongoDB). Each file is checked before it is returned.
    Raises DatabaseDumpError (no file left behind) on any failure."""
    if db.engine not in _DUMPERS:
        raise DatabaseDumpError(f"no dump for database engine {db.engine!r}")
    db = with_password_file(client, db, DatabaseDumpError)
    return _DUMPERS[db.engine](client, db, spool_dir, progress)


def verify_dump(client: docker.DockerClient | None, dump: DumpFile) -> dict[str, Any]:
    """Check one dump file; return what was checked and found, or raise
    DatabaseDumpError saying what is wrong.

    Without a container (CLIENT None) every format gets a structural check
    in Python: the SQL dump's header and "-- Dump completed" trailer; the
    pg_dump custom file's magic, header, TOC and every data block; the globals'
    header and trailer; the Mongo archive's gzip stream (CRC), magic and BSON
    framing. With a client, a custom-format dump is also listed by
    `pg_restore --list` in the dump's own container (no credentials needed).
    Only a restore proves that a server accepts the SQL inside."""
    if not dump.path.is_file():
        raise DatabaseDumpError(f"{dump.archive_name}: file missing")
    checks = {
        "sql": verify_sql_dump,
        "pg_custom": verify_pg_custom,
        "pg_globals_sql": verify_globals,
        "mongo_archive_gz": verify_mongo_archive,
    }
    if dump.format not in checks:
        raise DatabaseDumpError(f"{dump.archive_name}: unknown dump format {dump.format!r}")
    try:
        report = checks[dump.format](dump.path)
        if client is not None and dump.format == "pg_custom":
            report |= pg_restore_list(client, dump.container, dump)
            report["checks"] = [*report["checks"], "pg_restore_list"]
    except DatabaseDumpError as exc:
        raise DatabaseDumpError(f"{dump.archive_name}: {exc}") from None
    return {"archive_name": dump.archive_name, "database": dump.database, **report}
