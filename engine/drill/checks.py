"""What a drill asks the restored server: which databases exist, and the
rows of each table, in one query per database (the query that must succeed).
Names travel as hex and identifiers are quoted here, never interpolated raw."""

from __future__ import annotations

import docker

from engine.dumps.exec_stream import EXEC_NOT_FOUND, ExecError, exec_capture
from engine.dumps.tool_errors import error_line
from engine.errors import DatabaseRestoreError
from engine.inventory import DatabaseInfo

MYSQL_SYSTEM = ("information_schema", "performance_schema", "mysql", "sys")


def _run(db: DatabaseInfo, client: docker.DockerClient, cmd: list[str],
         env: dict[str, str]) -> list[str]:  # fmt: skip
    try:
        result, out = exec_capture(client, db.container.name, cmd, environment=env, limit=64 << 20)
    except ExecError as exc:
        raise DatabaseRestoreError(f"drill query: {exc}") from None
    if result.exit_code != 0:
        line = error_line(db.engine, result.stderr_text(), db.credentials.password)
        raise DatabaseRestoreError(f"drill query failed: {line or 'no message'}")
    return [row for row in out.decode("utf-8", "replace").splitlines() if row]


def _unhex(value: str) -> str:
    return bytes.fromhex(value).decode("utf-8", "replace")


# -- MySQL / MariaDB -------------------------------------------------------


def _mysql_client(client: docker.DockerClient, db: DatabaseInfo) -> str:
    for tool in ("mariadb", "mysql"):
        result, _ = exec_capture(client, db.container.name, [tool, "--version"])
        if result.exit_code not in EXEC_NOT_FOUND:
            return tool
    raise DatabaseRestoreError(f"no mariadb or mysql client in {db.container.name}")


def _mysql(client: docker.DockerClient, db: DatabaseInfo, sql: str) -> list[str]:
    password = db.credentials.password
    env = {"MYSQL_PWD": password.reveal()} if password else {}
    cmd = [_mysql_client(client, db), f"--user={db.credentials.user}", "-N", "-B", "-e", sql]
    return _run(db, client, cmd, env)


def _backticks(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def mysql_databases(client: docker.DockerClient, db: DatabaseInfo) -> set[str]:
    rows = _mysql(client, db, "SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA")
    return {_unhex(r) for r in rows} - set(MYSQL_SYSTEM)


def mysql_row_counts(
    client: docker.DockerClient, db: DatabaseInfo, database: str
) -> dict[str, int]:
    tables = [
        _unhex(r)
        for r in _mysql(
            client, db,
            "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "  # noqa: S608
            f"AND TABLE_SCHEMA = CONVERT(X'{database.encode().hex()}' USING utf8mb4)",
        )
    ]  # fmt: skip
    if not tables:
        # Still one query inside the database: it must answer.
        _mysql(client, db, f"USE {_backticks(database)}; SELECT 1")
        return {}
    union = " UNION ALL ".join(
        f"SELECT '{t.encode().hex()}', COUNT(*) FROM {_backticks(database)}.{_backticks(t)}"  # noqa: S608
        for t in tables
    )
    return {_unhex(k): int(v) for k, v in (row.split("\t") for row in _mysql(client, db, union))}


# -- PostgreSQL ------------------------------------------------------------


def _psql(client: docker.DockerClient, db: DatabaseInfo, database: str, sql: str) -> list[str]:
    env = {"PGUSER": db.credentials.user, "PGDATABASE": database, "PGCLIENTENCODING": "UTF8"}
    if db.credentials.password:
        env["PGPASSWORD"] = db.credentials.password.reveal()
    cmd = ["psql", "-X", "--no-password", "--no-align", "--tuples-only", "-F", "\t", "-c", sql]
    return _run(db, client, cmd, env)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def postgres_databases(client: docker.DockerClient, db: DatabaseInfo) -> set[str]:
    rows = _psql(client, db, "template1",
                 "SELECT encode(convert_to(datname, 'UTF8'), 'hex') FROM pg_database "
                 "WHERE NOT datistemplate")  # fmt: skip
    return {_unhex(r) for r in rows}


def postgres_row_counts(
    client: docker.DockerClient, db: DatabaseInfo, database: str
) -> dict[str, int]:
    """{"schema.table": rows} of ordinary tables (relkind r: the ones pg_dump
    writes data for; a partitioned parent's rows are its partitions')."""
    rows = _psql(
        client, db, database,
        "SELECT encode(convert_to(n.nspname, 'UTF8'), 'hex') || '\t' || "
        "encode(convert_to(c.relname, 'UTF8'), 'hex') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%'",
    )  # fmt: skip
    tables = [tuple(_unhex(part) for part in row.split("\t")) for row in rows]
    if not tables:
        return {}
    union = " UNION ALL ".join(
        f"SELECT '{(s + '.' + t).encode().hex()}', count(*) FROM {_ident(s)}.{_ident(t)}"  # noqa: S608
        for s, t in tables
    )
    answer = _psql(client, db, database, union)
    return {_unhex(k): int(v) for k, v in (row.split("\t") for row in answer)}
