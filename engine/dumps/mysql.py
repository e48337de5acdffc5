"""MySQL and MariaDB: one `mariadb-dump` (or `mysqldump`) file per user
database, restored by feeding it to the `mariadb` (or `mysql`) client.

The password reaches the tools only as MYSQL_PWD in the exec environment:
both MariaDB and MySQL clients read it (MySQL has deprecated it since 8.0
but still honours it); the alternative, an option file, would need its own
quoting rules and could outlive a crashed worker inside the container."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker

from engine.dumps.exec_stream import (
    EXEC_NOT_FOUND,
    ExecError,
    ExecResult,
    exec_capture,
    exec_stream,
)
from engine.dumps.row_counts import count_sql_rows
from engine.dumps.tool_errors import error_line
from engine.dumps.types import (
    CountingReader,
    DatabaseRestoreError,
    DumpFile,
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
from engine.progress import ProgressCallback, no_progress

# A restore's own databases (engine.dumps.mysql_shadow): never dumped.
SHADOW_PREFIX = "bs_restore_"
SYSTEM_DATABASES = frozenset({"information_schema", "performance_schema", "mysql", "sys"})
DUMP_TOOLS = ("mariadb-dump", "mysqldump")  # MariaDB 11 images dropped the mysql* names
CLIENTS = ("mariadb", "mysql")  # MySQL images have only the mysql* names
HEADER_MARKS = (b"-- MySQL dump", b"-- MariaDB dump")
TRAILER = b"-- Dump completed"  # written last, only when the dump finished (--comments is on)

# Why each option:
DUMP_OPTIONS = (
    # One consistent InnoDB snapshot (START TRANSACTION WITH CONSISTENT
    # SNAPSHOT) without locking the app out; also turns --lock-tables off.
    "--single-transaction",
    # Row by row from the server: the tool's memory stays flat for big tables.
    "--quick",
    # The schema objects an app relies on, not only tables.
    "--routines",
    "--triggers",
    "--events",
    # BLOBs as hex literals: the dump stays valid text whatever the bytes.
    "--hex-blob",
    # The dump is read back as utf8mb4; no mojibake for 4-byte characters.
    "--default-character-set=utf8mb4",
    # With --databases the dump recreates its database; dropping it first
    # makes a restore give exactly the dumped database, without tables that
    # were created after the backup.
    "--add-drop-database",
    # Tablespaces are server-wide, not part of one database, and MySQL >=
    # 8.0.21 wants the PROCESS privilege for them, which an app user lacks.
    "--no-tablespaces",
    # Rows up to the protocol limit (the client default is 16-24 MB).
    "--max-allowed-packet=1G",
)


def dump_mysql(
    client: docker.DockerClient,
    db: DatabaseInfo,
    spool_dir: Path,
    progress: ProgressCallback = no_progress,
) -> list[DumpFile]:
    """Dump every user database the credentials can see, each into its own
    file. On any failure the files written so far are removed."""
    name = db.container.name
    cli = _pick_tool(client, db, CLIENTS)
    version, databases = _version_and_databases(client, db, cli)
    engine = "mariadb" if "mariadb" in version.lower() else "mysql"
    tool, tool_version = _pick_tool_with_version(client, db, DUMP_TOOLS)
    options = list(DUMP_OPTIONS)
    if "mariadb" not in tool_version.lower():
        # Oracle's mysqldump would write SET @@GLOBAL.GTID_PURGED into the
        # dump: restoring one database must not rewrite the server's GTIDs.
        options.append("--set-gtid-purged=OFF")
    dumps: list[DumpFile] = []
    try:
        for database in databases:
            path = spool_path(spool_dir, name, database, "sql")
            cmd = [tool, f"--user={db.credentials.user}", *options, "--databases", "--", database]
            throttled = Throttled(progress, "dumping", f"{name}/{database}", None)
            what = f"dump of {database} in {name}"
            size, sha256 = dump_to_spool(client, db, cmd, client_env(db), path, throttled, what)
            dump = DumpFile(
                container=name,
                engine=engine,
                server_version=version,
                database=database,
                format="sql",
                path=path,
                size=size,
                sha256=sha256,
                archive_name=archive_name(name, database, "sql"),
            )
            dumps.append(dump)
            try:
                verify_sql_dump(path)
            except DatabaseDumpError as exc:
                raise DatabaseDumpError(f"{what}: {exc}") from None
            # Counted from the file just written (see row_counts.py for why).
            dumps[-1] = replace(dump, row_counts=count_sql_rows(path))
    except BaseException:
        remove_quietly([d.path for d in dumps])
        raise
    return dumps


def _version_and_databases(
    client: docker.DockerClient, db: DatabaseInfo, cli: str
) -> tuple[str, list[str]]:
    """The server's version and the user databases the credentials can see,
    in one client call."""
    # HEX(): names may hold tabs or newlines, which the client would escape.
    rows = _query(
        client,
        db,
        cli,
        "SELECT VERSION(); SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA ORDER BY 1",
    )
    names = [bytes.fromhex(row).decode("utf-8") for row in rows[1:] if row]
    # "#mysql50#..." are directories in the datadir that are not databases
    # (e.g. lost+found on a volume root), shown by MariaDB for old upgrades.
    databases = [
        n
        for n in names
        if n not in SYSTEM_DATABASES
        and not n.startswith("#mysql50#")
        and not n.startswith(SHADOW_PREFIX)
    ]
    return rows[0], databases


def verify_sql_dump(path: Path) -> dict[str, Any]:
    """Check a mysqldump/mariadb-dump file without a server: the tool's
    header near the start and its "-- Dump completed" trailer at the end
    (missing when the tool died or the file was cut)."""
    size = path.stat().st_size
    if size == 0:
        raise DatabaseDumpError("the SQL dump is empty")
    with path.open("rb") as f:
        head = f.read(4096)
        f.seek(max(0, size - 1024))
        tail = f.read()
    if not any(mark in head for mark in HEADER_MARKS):
        raise DatabaseDumpError("not a mysqldump/mariadb-dump file (no dump header)")
    if TRAILER not in tail:
        raise DatabaseDumpError('the SQL dump is truncated (no "-- Dump completed" trailer)')
    return {"format": "sql", "size": size, "checks": ["header", "trailer"]}


def restore_mysql(
    client: docker.DockerClient,
    db: DatabaseInfo,
    dumps: Sequence[DumpFile],
    progress: ProgressCallback = no_progress,
) -> None:
    """Feed each dump to the client. Each dump drops and recreates its own
    database (--add-drop-database), so the result equals what was dumped."""
    name = db.container.name
    cli = pick_client(client, db)
    for dump in dumps:
        if dump.format != "sql":
            raise DatabaseRestoreError(f"cannot restore a {dump.format} dump into {name}")
        throttled = Throttled(progress, "restoring", f"{name}/{dump.database}", dump.size)
        what = f"restore of {dump.database} into {name}"
        feed_sql(client, db, cli, CountingReader(dump.path, throttled), what)
        throttled.report()


def pick_client(client: docker.DockerClient, db: DatabaseInfo) -> str:
    """The SQL client the container has (mariadb or mysql)."""
    try:
        return _pick_tool(client, db, CLIENTS)
    except DatabaseDumpError as exc:
        raise DatabaseRestoreError(str(exc)) from None


def feed_sql(
    client: docker.DockerClient, db: DatabaseInfo, cli: str, reader: Any, what: str
) -> None:
    """Feed READER (a file-like, closed here) to the CLI client in DB's
    container; WHAT names the load in errors (never a secret)."""
    cmd = [
        cli,
        f"--user={db.credentials.user}",
        "--default-character-set=utf8mb4",
        "--max-allowed-packet=1G",
    ]
    try:
        result = exec_stream(
            client, container_ref(db), cmd, environment=client_env(db), stdin=reader
        )
    except ExecError as exc:
        raise DatabaseRestoreError(f"{what}: {exc}") from None
    finally:
        reader.close()
    if result.exit_code != 0 or not result.stdin_complete:
        raise DatabaseRestoreError(
            f"{what}: {cli} exited with status {result.exit_code}: "
            f"{client_error_line(result, db) or 'no message'}"
        )


def wait_mysql(client: docker.DockerClient, db: DatabaseInfo, timeout: float) -> None:
    """Until the server answers a query over TCP 127.0.0.1. Not the socket:
    the official entrypoint's bootstrap server listens only on the socket,
    and goes away again once the real server is configured."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    cli: str | None = None
    while True:
        require_running(client, db)
        try:
            cli = cli or _pick_tool(client, db, CLIENTS)
            cmd = [
                cli,
                "--protocol=tcp",
                "--host=127.0.0.1",
                f"--user={db.credentials.user}",
                "--connect-timeout=5",
                "-N",
                "-B",
                "-e",
                "SELECT 1",
            ]
            result, _ = exec_capture(client, container_ref(db), cmd, environment=client_env(db))
            if result.exit_code == 0:
                return
            last = client_error_line(result, db) or f"{cli} exited with status {result.exit_code}"
            if "ERROR 1045" in last:  # access denied: waiting will not fix it
                raise DatabaseRestoreError(f"{db.container.name}: {last}")
        except ExecError as exc:
            last = str(exc)
        except DatabaseDumpError as exc:
            raise DatabaseRestoreError(str(exc)) from None
        if time.monotonic() > deadline:
            raise DatabaseRestoreError(
                f"{db.container.name} did not accept connections within {timeout:.0f}s: {last}"
            )
        time.sleep(0.5)


def client_error_line(result: ExecResult, db: DatabaseInfo) -> str:
    """What of the client's stderr may be shown: its error line, without the
    statement it echoes or the values it quotes, and without the password."""
    return error_line("mysql", result.stderr_text(), db.credentials.password)


def client_env(db: DatabaseInfo) -> dict[str, str]:
    """The client's environment: the password goes in MYSQL_PWD, never in argv."""
    password = db.credentials.password
    return {"MYSQL_PWD": password.reveal()} if password else {}


def _query(client: docker.DockerClient, db: DatabaseInfo, cli: str, sql: str) -> list[str]:
    cmd = [cli, f"--user={db.credentials.user}", "-N", "-B", "-e", sql]
    try:
        result, out = exec_capture(client, container_ref(db), cmd, environment=client_env(db))
    except ExecError as exc:
        raise DatabaseDumpError(str(exc)) from None
    if result.exit_code != 0:
        raise DatabaseDumpError(
            f"{db.container.name}: {cli} failed: {client_error_line(result, db) or 'no message'}"
        )
    return out.decode("utf-8", "replace").splitlines()


def _pick_tool(client: docker.DockerClient, db: DatabaseInfo, candidates: Sequence[str]) -> str:
    return _pick_tool_with_version(client, db, candidates)[0]


def _pick_tool_with_version(
    client: docker.DockerClient, db: DatabaseInfo, candidates: Sequence[str]
) -> tuple[str, str]:
    """The first of CANDIDATES present in the container, with its --version."""
    for tool in candidates:
        try:
            result, out = exec_capture(client, container_ref(db), [tool, "--version"])
        except ExecError as exc:
            raise DatabaseDumpError(str(exc)) from None
        if result.exit_code not in EXEC_NOT_FOUND:
            return tool, out.decode("utf-8", "replace")
    raise DatabaseDumpError(f"none of {', '.join(candidates)} found in {db.container.name}")
