"""PostgreSQL: `pg_dump -Fc` per database plus `pg_dumpall --globals-only`
(roles, tablespaces), restored with psql (globals) and pg_restore.

Connections go through the container's local socket (no -h): every
PostgreSQL image has it, and it is the one the official image trusts. The
connection settings travel as PG* variables in the exec environment:
PGPASSWORD keeps the password out of argv, and PGDATABASE keeps database
names out of argv too (in argv a name containing "=" would be parsed as a
connection string)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker

from engine.dumps.exec_stream import ExecError, exec_capture, exec_stream
from engine.dumps.pg_format import CustomStructure, NewerFormat, read_structure
from engine.dumps.row_counts import count_pg_custom_rows
from engine.dumps.tool_errors import error_line
from engine.dumps.types import (
    GLOBALS_NAME,
    CountingReader,
    DatabaseRestoreError,
    DumpFile,
    DumpFormat,
    Throttled,
    archive_name,
    container_ref,
    dump_to_spool,
    remove_quietly,
    require_running,
    spool_path,
)
from engine.errors import DatabaseDumpError
from engine.inventory import DatabaseInfo
from engine.progress import Progress, ProgressCallback, no_progress

MAINTENANCE_DBS = ("postgres", "template1")
GLOBALS_HEADER = b"-- PostgreSQL database cluster dump"
GLOBALS_TRAILER = b"-- PostgreSQL database cluster dump complete"
DUPLICATE_OBJECT = "42710"  # SQLSTATE of "role ... already exists"

DUMP_OPTIONS = (
    # One file per database, restorable alone, readable by pg_restore --list.
    "--format=custom",
    # No compression inside: the archive is compressed with zstd as a whole,
    # faster and smaller than zstd over pg_dump's gzip.
    "--compress=0",
    # Never wait for a password prompt (there is no TTY): fail instead.
    "--no-password",
)


def dump_postgres(
    client: docker.DockerClient,
    db: DatabaseInfo,
    spool_dir: Path,
    progress: ProgressCallback = no_progress,
) -> list[DumpFile]:
    """The globals first, then every database that is not a template. On any
    failure the files written so far are removed."""
    name = db.container.name
    maintenance, row = _maintenance_db(
        client,
        db,
        avoid=None,
        error=DatabaseDumpError,
        sql="SELECT current_setting('server_version') || '|' || "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)::text",
    )
    version, superuser = row[0].rsplit("|", 1)
    databases = list_databases(client, db, maintenance)

    def record(database: str | None, fmt: DumpFormat, path: Path, size: int, sha: str) -> DumpFile:
        stem = GLOBALS_NAME if database is None else database
        return DumpFile(
            name, "postgres", version, database, fmt, path, size, sha, archive_name(name, stem, fmt)
        )

    dumps: list[DumpFile] = []
    try:
        # Role passwords live in pg_authid, which only a superuser can read:
        # for an owner that is not one, its roles without passwords beat no dump.
        cmd = ["pg_dumpall", "--globals-only", "--no-password", f"--database={maintenance}"]
        if superuser != "true":
            cmd.append("--no-role-passwords")
        path = spool_path(spool_dir, name, GLOBALS_NAME, "pg_globals_sql")
        what = f"dump of the roles of {name}"
        throttled = Throttled(progress, "dumping", f"{name}/{GLOBALS_NAME}", None)
        size, sha = dump_to_spool(client, db, cmd, _env(db, maintenance), path, throttled, what)
        dumps.append(record(None, "pg_globals_sql", path, size, sha))
        _checked(what, verify_globals, path)

        for database in databases:
            path = spool_path(spool_dir, name, database, "pg_custom")
            what = f"dump of {database} in {name}"
            throttled = Throttled(progress, "dumping", f"{name}/{database}", None)
            cmd = ["pg_dump", *DUMP_OPTIONS]
            size, sha = dump_to_spool(client, db, cmd, _env(db, database), path, throttled, what)
            dump = record(database, "pg_custom", path, size, sha)
            dumps.append(dump)
            _checked(what, verify_pg_custom, path)
            # Counted from the file just written (see row_counts.py for why).
            dumps[-1] = dump = replace(dump, row_counts=count_pg_custom_rows(path))
            _checked(what, lambda d: pg_restore_list(client, container_ref(db), d), dump)
    except BaseException:
        remove_quietly([d.path for d in dumps])
        raise
    return dumps


def list_databases(client: docker.DockerClient, db: DatabaseInfo, maintenance: str) -> list[str]:
    rows = _query(
        client,
        db,
        maintenance,
        # hex: a database name may contain a newline. Databases these
        # credentials may not connect to are someone else's, as in MySQL's
        # SHOW DATABASES (for a superuser that is none).
        "SELECT encode(convert_to(datname, 'UTF8'), 'hex') FROM pg_database "
        "WHERE NOT datistemplate AND datallowconn "
        "AND has_database_privilege(datname, 'CONNECT') ORDER BY datname",
        DatabaseDumpError,
    )
    return [bytes.fromhex(row).decode("utf-8") for row in rows if row]


# -- Verification -------------------------------------------------------------


def verify_pg_custom(path: Path) -> dict[str, Any]:
    """Walk a custom-format file without a server: header, TOC, and every
    data block to its end marker. A cut file fails here, while `pg_restore
    --list` reads only the TOC at the front and would accept it."""
    try:
        structure = read_structure(path)
    except NewerFormat as exc:
        # A pg_dump newer than this checker: do not fail a good dump over it;
        # `pg_restore --list` (same version as pg_dump) still judges it.
        return {"format": "pg_custom", "size": path.stat().st_size, "checks": ["header"],
                "note": str(exc)}  # fmt: skip
    return {
        "format": "pg_custom",
        "size": path.stat().st_size,
        "checks": ["header", "toc", "data_blocks"],
        "archive_version": structure.version,
        "database": structure.database,
        "server_version": structure.server_version,
        "toc_entries": structure.toc_entries,
        "data_blocks": structure.data_blocks,
    }


def verify_globals(path: Path) -> dict[str, Any]:
    """pg_dumpall writes a header comment first and a "complete" comment last."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(256)
        f.seek(max(0, size - 256))
        tail = f.read()
    if GLOBALS_HEADER not in head:
        raise DatabaseDumpError("not a pg_dumpall file (no cluster dump header)")
    if GLOBALS_TRAILER not in tail:
        raise DatabaseDumpError('the globals dump is truncated (no "dump complete" trailer)')
    return {"format": "pg_globals_sql", "size": size, "checks": ["header", "trailer"]}


_TOC_COUNT = re.compile(rb"^;\s+TOC Entries: (\d+)", re.MULTILINE)


def pg_restore_list(client: docker.DockerClient, container: str, dump: DumpFile) -> dict[str, Any]:
    """`pg_restore --list` of the dump inside a PostgreSQL container: the
    authority on whether the file is readable. The file is streamed on
    stdin rather than copied in, and only up to the end of its TOC, all that
    --list reads: nothing to clean up in the container, and no connection,
    so no credentials. Its TOC count must match ours."""
    try:
        structure: CustomStructure | None = read_structure(dump.path, walk_data=False)
    except NewerFormat:
        structure = None  # feed it all; --list stops reading where it needs to
    with dump.path.open("rb") as f:
        try:
            result, out = exec_capture(
                client,
                container,
                ["pg_restore", "--list"],
                stdin=f,
                stdin_limit=structure.toc_end if structure else None,
                limit=4096,
            )
        except ExecError as exc:
            raise DatabaseDumpError(f"pg_restore --list: {exc}") from None
    if result.exit_code != 0:
        raise DatabaseDumpError(
            "pg_restore --list cannot read the dump: "
            f"{error_line('postgres', result.stderr_text()) or 'no message'}"
        )
    match = _TOC_COUNT.search(out)
    if not match or (structure and int(match.group(1)) != structure.toc_entries):
        raise DatabaseDumpError("pg_restore --list does not agree with the dump's TOC")
    return {"pg_restore_list": "ok", "toc_entries": int(match.group(1))}


# -- Restore ------------------------------------------------------------------


def restore_postgres(
    client: docker.DockerClient,
    db: DatabaseInfo,
    dumps: Sequence[DumpFile],
    progress: ProgressCallback = no_progress,
) -> None:
    """Globals first (roles must exist before objects are owned by them),
    then each database is dropped and recreated from its dump
    (`pg_restore --clean --if-exists --create`): the result equals the
    dumped database whether it was since modified, dropped, or never there.

    Credentials that may not create databases (an app owner that is not a
    superuser) restore into the existing database instead, after dropping
    everything they own in it; roles cannot be created then, so the globals
    are skipped (reported through progress)."""
    name = db.container.name
    globals_dumps = [d for d in dumps if d.format == "pg_globals_sql"]
    database_dumps = [d for d in dumps if d.format == "pg_custom"]
    if len(globals_dumps) + len(database_dumps) != len(dumps):
        raise DatabaseRestoreError(f"cannot restore a non-PostgreSQL dump into {name}")
    maintenance, row = _maintenance_db(
        client,
        db,
        avoid=None,
        error=DatabaseRestoreError,
        sql="SELECT rolsuper::text || '|' || rolcreatedb::text FROM pg_roles "
        "WHERE rolname = current_user",
    )
    superuser, createdb = (value == "true" for value in row[0].split("|"))
    for dump in globals_dumps:
        if superuser:
            _restore_globals(client, db, dump, maintenance, progress)
        else:
            progress(Progress("restoring", 0, dump.size, f"{name}/{GLOBALS_NAME} skipped: "
                              "only a superuser can restore roles"))  # fmt: skip
    for dump in database_dumps:
        if superuser or createdb:
            _restore_recreated(client, db, dump, progress)
        else:
            _restore_in_place(client, db, dump, progress)


def _restore_globals(
    client: docker.DockerClient,
    db: DatabaseInfo,
    dump: DumpFile,
    maintenance: str,
    progress: ProgressCallback,
) -> None:
    """psql without ON_ERROR_STOP: CREATE ROLE of a role that exists fails
    (SQLSTATE 42710) and the ALTER ROLE after it still sets its attributes.
    Any other error fails the restore. SQLSTATEs, not message text, so a
    server speaking another language is judged the same."""
    name = db.container.name
    errors: list[str] = []
    lines = _LineScanner(lambda line: _note_error(line, errors))
    throttled = Throttled(progress, "restoring", f"{name}/{GLOBALS_NAME}", dump.size)
    reader = CountingReader(dump.path, throttled)
    cmd = ["psql", "-X", "--no-password", "--quiet", "-v", "VERBOSITY=verbose", "-f", "-"]
    try:
        result = exec_stream(
            client,
            container_ref(db),
            cmd,
            environment=_env(db, maintenance),
            stdin=reader,
            stderr=lines.feed,
        )
    except ExecError as exc:
        raise DatabaseRestoreError(f"restore of the roles of {name}: {exc}") from None
    finally:
        reader.close()
    lines.flush()
    if result.exit_code != 0 or not result.stdin_complete or errors:
        detail = errors[0] if errors else result.stderr_text()
        raise DatabaseRestoreError(
            f"restore of the roles of {name} failed: "
            f"{error_line('postgres', detail, db.credentials.password) or 'no message'}"
        )
    throttled.report()


def _restore_recreated(
    client: docker.DockerClient, db: DatabaseInfo, dump: DumpFile, progress: ProgressCallback
) -> None:
    database = dump.database or ""
    # Connect elsewhere than the database being dropped and recreated.
    maintenance, _ = _maintenance_db(client, db, avoid=database, error=DatabaseRestoreError)
    # DROP DATABASE fails while sessions are open (the app's pool, a
    # monitoring agent); the restore flow has stopped the app, end the rest.
    _query(
        client,
        db,
        maintenance,
        # The name goes in as hex digits: nothing to quote, nothing to inject.
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "  # noqa: S608
        f"WHERE datname = convert_from(decode('{database.encode().hex()}', 'hex'), 'UTF8') "
        "AND pid <> pg_backend_pid()",
        DatabaseRestoreError,
    )
    # With --create, --clean means DROP DATABASE, CREATE DATABASE (with the
    # dumped owner, encoding, settings, ACL), then the restore inside it;
    # the database named by --dbname is used only to issue those two.
    _pg_restore(client, db, dump, ["--clean", "--if-exists", "--create"], maintenance, progress)


def _restore_in_place(
    client: docker.DockerClient, db: DatabaseInfo, dump: DumpFile, progress: ProgressCallback
) -> None:
    database = dump.database or ""
    # Everything the role owns in the database goes, so objects created
    # after the backup do not survive it; then --clean --if-exists for the
    # rest of what the dump holds.
    _query(client, db, database, "DROP OWNED BY CURRENT_USER", DatabaseRestoreError)
    _pg_restore(client, db, dump, ["--clean", "--if-exists"], _conninfo(database), progress)


def _pg_restore(
    client: docker.DockerClient,
    db: DatabaseInfo,
    dump: DumpFile,
    options: list[str],
    dbname: str,
    progress: ProgressCallback,
) -> None:
    name = db.container.name
    what = f"restore of {dump.database} into {name}"
    cmd = [
        "pg_restore",
        *options,
        "--exit-on-error",  # the first error fails the restore, never a partial "success"
        "--no-password",
        f"--dbname={dbname}",
    ]
    throttled = Throttled(progress, "restoring", f"{name}/{dump.database}", dump.size)
    reader = CountingReader(dump.path, throttled)
    try:
        result = exec_stream(
            client, container_ref(db), cmd, environment=_env(db, None), stdin=reader
        )
    except ExecError as exc:
        raise DatabaseRestoreError(f"{what}: {exc}") from None
    finally:
        reader.close()
    if result.exit_code != 0 or not result.stdin_complete:
        stderr = error_line("postgres", result.stderr_text(), db.credentials.password)
        raise DatabaseRestoreError(
            f"{what}: pg_restore exited with status {result.exit_code}: {stderr or 'no message'}"
        )
    throttled.report()


def _conninfo(database: str) -> str:
    """A libpq connection string naming DATABASE, quoted: a bare name with
    "=" in it would itself be parsed as a connection string."""
    quoted = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{quoted}'"


_ERROR = re.compile(r"\bERROR:\s+([0-9A-Z]{5}):")


def _note_error(line: str, errors: list[str]) -> None:
    match = _ERROR.search(line)
    if match and match.group(1) != DUPLICATE_OBJECT and len(errors) < 20:
        errors.append(line)
    elif "ERROR:" in line and not match and len(errors) < 20:
        errors.append(line)  # an error without SQLSTATE: not one we know to be harmless


class _LineScanner:
    """Splits a byte stream into text lines for a callback, holding at most
    one partial line (bounded: over-long lines are cut)."""

    def __init__(self, on_line: Any, limit: int = 8192) -> None:
        self.on_line = on_line
        self.limit = limit
        self.partial = b""

    def feed(self, chunk: bytes) -> None:
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        self.partial = self.partial[-self.limit :]
        for line in lines:
            self.on_line(line[: self.limit].decode("utf-8", "replace"))

    def flush(self) -> None:
        if self.partial:
            self.on_line(self.partial.decode("utf-8", "replace"))
            self.partial = b""


# -- Readiness ----------------------------------------------------------------


def wait_postgres(client: docker.DockerClient, db: DatabaseInfo, timeout: float) -> None:
    """Until the real server accepts TCP on 127.0.0.1 (the official
    entrypoint's init server listens only on the socket, then stops), and
    our credentials work over the socket the dumps use."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        require_running(client, db)
        try:
            ready, _ = exec_capture(
                client,
                container_ref(db),
                ["pg_isready", "--host=127.0.0.1", "--timeout=5"],
                environment=_env(db, None),
            )
            if ready.exit_code == 0:
                _maintenance_db(client, db, avoid=None, error=DatabaseRestoreError)
                return
            last = f"pg_isready exited with status {ready.exit_code}"
        except ExecError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise DatabaseRestoreError(
                f"{db.container.name} did not accept connections within {timeout:.0f}s: {last}"
            )
        time.sleep(0.5)


# -- Helpers ------------------------------------------------------------------


def _env(db: DatabaseInfo, database: str | None) -> dict[str, str]:
    env = {
        "PGUSER": db.credentials.user,
        "PGCONNECT_TIMEOUT": "10",
        "PGCLIENTENCODING": "UTF8",  # our queries' output is decoded as UTF-8
    }
    if database is not None:
        env["PGDATABASE"] = database
    if db.credentials.password:
        env["PGPASSWORD"] = db.credentials.password.reveal()
    return env


def _checked(what: str, check: Any, arg: Any) -> None:
    try:
        check(arg)
    except DatabaseDumpError as exc:
        raise DatabaseDumpError(f"{what}: {exc}") from None


def _query(
    client: docker.DockerClient,
    db: DatabaseInfo,
    database: str,
    sql: str,
    error: type[DatabaseDumpError],
) -> list[str]:
    cmd = ["psql", "-X", "--no-password", "--no-align", "--tuples-only", "-c", sql]
    try:
        result, out = exec_capture(
            client, container_ref(db), cmd, environment=_env(db, database), limit=64 << 20
        )
    except ExecError as exc:
        raise error(str(exc)) from None
    if result.exit_code != 0:
        stderr = error_line("postgres", result.stderr_text(), db.credentials.password)
        raise error(f"{db.container.name}: psql failed: {stderr or 'no message'}")
    return out.decode("utf-8", "replace").splitlines()


def _maintenance_db(
    client: docker.DockerClient,
    db: DatabaseInfo,
    avoid: str | None,
    error: type[DatabaseDumpError],
    sql: str = "SELECT 1",
) -> tuple[str, list[str]]:
    """A database to connect to for cluster-wide work, with the answer to
    SQL there: postgres, or template1 where postgres was dropped (or is the
    one being restored)."""
    candidates = [d for d in MAINTENANCE_DBS if d != avoid]
    for candidate in candidates[:-1]:
        try:
            return candidate, _query(client, db, candidate, sql, error)
        except DatabaseDumpError as exc:
            if "does not exist" not in str(exc):
                raise
    return candidates[-1], _query(client, db, candidates[-1], sql, error)
