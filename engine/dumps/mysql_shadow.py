"""Loading a MySQL/MariaDB dump into a shadow database while the app runs,
and swapping its tables in during the downtime (issue 15).

`mariadb < dump` of a 100 MB dump takes several seconds; done in the
downtime it was most of the downtime and, after the staging pass, half
again of tar's time for the whole restore. Instead the dump is loaded, as
soon as the staging pass has spooled it and beside the rest of that pass,
into a database of its own in the same server (`bs_restore_<token>_new`):
nothing the app uses is touched, so a corrupt archive found later still
leaves the app as it was. In the downtime one RENAME TABLE moves the live
database's tables aside (`..._old`) and the shadow's in, which MariaDB and
MySQL do atomically (all of them or none) and without copying; a rollback
renames them back. The aside and the shadow databases are dropped once the
app runs on the restored data.

Only where this gives exactly what loading the dump into the live database
gives (the dump drops and recreates its database): a dump whose database
is named only by its three header lines (DROP, CREATE, USE), with no views,
triggers, routines or events (which name their database, and which RENAME
TABLE cannot move), and a live database with none of them either. Anything
else is loaded in the downtime, as before, and the result says why.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import docker

from engine.dumps.exec_stream import ExecError, exec_capture
from engine.dumps.mysql import (
    SHADOW_PREFIX,
    client_env,
    client_error_line,
    feed_sql,
    pick_client,
)
from engine.dumps.types import DatabaseRestoreError, container_ref
from engine.inventory import DatabaseInfo

HEADER_BYTES = 64 << 10  # the three header lines are within mariadb-dump's first lines
SCAN_CHUNK = 8 << 20
LOCK_WAIT_SECONDS = 30
# What mariadb-dump and mysqldump write for views (/*!50001), triggers,
# routines and events (DELIMITER ;; around them, /*!50003 and /*!50106), and a
# second USE (written before the views). A newline cannot occur inside a
# dumped value (the tools escape it as \n), so these are statements.
_FORBIDDEN = (
    b"\n/*!50001 ", b"\n/*!50003 ", b"\n/*!50106 ", b"\nDELIMITER ", b"\nUSE ",
    b"\nCREATE DATABASE ",
)  # fmt: skip


class ShadowCancelled(Exception):
    """The staging pass failed: the shadow load was stopped."""


@dataclass(frozen=True)
class ShadowNames:
    database: str  # the live database the dump is of
    shadow: str  # loaded while the app runs
    aside: str  # the live database's tables, during the downtime until dropped

    @classmethod
    def for_dump(cls, database: str, token: str) -> ShadowNames:
        return cls(database, f"{SHADOW_PREFIX}{token}_new", f"{SHADOW_PREFIX}{token}_old")


@dataclass(frozen=True)
class SwapRecord:
    """A swap made: what swapping back needs (the live database's defaults)."""

    names: ShadowNames
    charset: str
    collation: str


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _header_lines(name: str) -> tuple[bytes, bytes, bytes]:
    q = quote(name).encode()
    return (
        b"/*!40000 DROP DATABASE IF EXISTS " + q + b"*/;\n",
        b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ " + q + b" ",
        b"USE " + q + b";\n",
    )


def why_not_shadow(path: Path, database: str) -> str | None:
    """Why the dump at PATH (of DATABASE) cannot be loaded into a shadow
    database (None: it can). Reads the file once (it is in the page cache:
    just spooled)."""
    with path.open("rb") as f:
        head = f.read(HEADER_BYTES)
        ends = _header_end(head, database)
        if ends is None:
            return "its dump does not start as mariadb-dump --databases writes it"
        f.seek(ends)
        tail = b"\n"
        while chunk := f.read(SCAN_CHUNK):
            window = tail + chunk
            for mark in _FORBIDDEN:
                if mark in window:
                    return "its dump holds views, triggers, routines or events"
            tail = window[-32:]
    return None


def _header_end(head: bytes, database: str) -> int | None:
    """The offset just past the dump's USE line, if its three header lines
    are there, in order, each at a line start."""
    drop, create, use = _header_lines(database)
    at = 0
    for line in (drop, create, use):
        found = head.find(b"\n" + line, at)
        if found < 0:
            return None
        at = found + 1 + len(line)
    return at


class ShadowDumpReader:
    """The dump at PATH with its three header lines naming the shadow
    database instead of the live one; stops (ShadowCancelled) once CANCEL
    is set. Everything past the USE line is passed as it is."""

    def __init__(self, path: Path, names: ShadowNames, cancel: threading.Event) -> None:
        self._file = path.open("rb")
        self._cancel = cancel
        head = self._file.read(HEADER_BYTES)
        ends = _header_end(head, names.database)
        if ends is None:
            self._file.close()
            raise DatabaseRestoreError("the dump's header is not as mariadb-dump writes it")
        header = head[:ends]
        for live, shadow in zip(
            _header_lines(names.database), _header_lines(names.shadow), strict=True
        ):
            header = header.replace(b"\n" + live, b"\n" + shadow, 1)
        self._pending = header + head[ends:]

    def read(self, size: int = -1) -> bytes:
        if self._cancel.is_set():  # an end of input: load_shadow sees CANCEL and raises
            return b""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()


def load_shadow(
    client: docker.DockerClient,
    db: DatabaseInfo,
    path: Path,
    names: ShadowNames,
    cancel: threading.Event,
) -> None:
    """Load the dump at PATH into NAMES.shadow (made by the dump's own
    CREATE DATABASE line, with its character set). DB's password is known
    (with_password_file). Raises DatabaseRestoreError, never with a secret."""
    what = f"load of {names.database} into {names.shadow} in {db.container.name}"
    try:
        feed_sql(client, db, pick_client(client, db), ShadowDumpReader(path, names, cancel), what)
    except DatabaseRestoreError:
        if cancel.is_set():  # the cut input's error is not the reason
            raise ShadowCancelled(f"{what}: stopped, the restore's staging pass failed") from None
        raise
    if cancel.is_set():  # cut at a statement's end: loaded in part
        raise ShadowCancelled(f"{what}: stopped, the restore's staging pass failed")


@dataclass(frozen=True)
class SwapPlan:
    record: SwapRecord
    sql: str


def plan_swap(client: docker.DockerClient, db: DatabaseInfo, names: ShadowNames) -> SwapPlan:
    """The swap of NAMES (run_swap): in one RENAME TABLE, the live
    database's tables to NAMES.aside and the shadow's into the live
    database; then the live database takes the shadow's default character
    set and collation (what the dump's CREATE DATABASE gave). Refuses
    (DatabaseRestoreError) when the live database holds a view, trigger,
    routine or event."""
    state = _state(client, db, (names.database, names.shadow))
    live, shadow = state.tables[names.database], state.tables[names.shadow]
    if state.objects[names.database] or state.objects[names.shadow]:
        raise DatabaseRestoreError(
            f"{names.database} in {db.container.name} holds views, triggers, routines or "
            "events, which a swap of tables cannot move"
        )
    if names.shadow not in state.defaults:
        raise DatabaseRestoreError(f"the shadow database of {names.database} is missing")
    charset, collation = state.defaults.get(names.database, state.defaults[names.shadow])
    renames = [(names.database, t, names.aside) for t in live]
    renames += [(names.shadow, t, names.database) for t in shadow]
    # The app is down, but another client's open transaction on a live table
    # would hold the RENAME for a year (the default): it fails instead.
    sql = f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS};\n"
    sql += f"CREATE DATABASE IF NOT EXISTS {quote(names.database)};\n"
    sql += f"CREATE DATABASE {quote(names.aside)};\n"
    sql += _rename_sql(renames)
    new_charset, new_collation = state.defaults[names.shadow]
    sql += f"ALTER DATABASE {quote(names.database)} CHARACTER SET {new_charset} " \
           f"COLLATE {new_collation};\n"  # fmt: skip
    return SwapPlan(SwapRecord(names, charset, collation), sql)


def run_swap(client: docker.DockerClient, db: DatabaseInfo, plan: SwapPlan) -> None:
    """Make the swap PLAN describes. On an error nothing was moved (the
    RENAME is all or nothing); an empty aside database may be left."""
    what = f"swap of {plan.record.names.database} in {db.container.name}"
    _run(client, db, plan.sql, what)


def swap_back(client: docker.DockerClient, db: DatabaseInfo, record: SwapRecord) -> None:
    """Undo run_swap, if it took place (swapped): the restored tables back
    to the shadow database, the aside ones (the live database's before the
    restore) back in, with the live database's own defaults."""
    names = record.names
    if not swapped(client, db, names):  # nothing moved: the live tables stay
        return
    state = _state(client, db, (names.database, names.aside))
    renames = [(names.database, t, names.shadow) for t in state.tables[names.database]]
    renames += [(names.aside, t, names.database) for t in state.tables[names.aside]]
    sql = f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS};\n"
    sql += f"CREATE DATABASE IF NOT EXISTS {quote(names.shadow)};\n" + _rename_sql(renames)
    sql += f"ALTER DATABASE {quote(names.database)} CHARACTER SET {record.charset} " \
           f"COLLATE {record.collation};\n"  # fmt: skip
    _run(client, db, sql, f"swap back of {names.database} in {db.container.name}")


def swapped(client: docker.DockerClient, db: DatabaseInfo, names: ShadowNames) -> bool:
    """Whether run_swap took place (recovery after a crash around it). The
    RENAME is all or nothing, and run_swap makes the aside database in the
    statement before it: swapped when the aside database holds tables (the
    live ones), or exists while the shadow holds none (moved in; the live
    database had none). An aside database left empty by a failed RENAME has
    the shadow still full."""
    state = _state(client, db, (names.aside, names.shadow))
    if names.aside not in state.defaults:
        return False
    return bool(state.tables[names.aside]) or not state.tables[names.shadow]


def drop(client: docker.DockerClient, db: DatabaseInfo, names: Sequence[ShadowNames]) -> None:
    """DROP the shadow and aside databases of NAMES (those that exist)."""
    if not names:
        return
    sql = "".join(
        f"DROP DATABASE IF EXISTS {quote(n.shadow)};\nDROP DATABASE IF EXISTS {quote(n.aside)};\n"
        for n in names
    )
    _run(client, db, sql, f"drop of the restore's own databases in {db.container.name}")


@dataclass
class _State:
    tables: dict[str, list[str]]  # database -> its base tables
    objects: dict[str, int]  # database -> views, triggers, routines and events in it
    defaults: dict[str, tuple[str, str]]  # database (those that exist) -> charset, collation


def _state(client: docker.DockerClient, db: DatabaseInfo, databases: Sequence[str]) -> _State:
    # HEX() both ways: names may hold any character, and are compared as bytes.
    wanted = ", ".join(f"'{name.encode().hex().upper()}'" for name in databases)
    sql = (  # WANTED is hex digits only
        "SELECT 'S', HEX(SCHEMA_NAME), DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "  # noqa: S608
        f"FROM information_schema.SCHEMATA WHERE HEX(SCHEMA_NAME) IN ({wanted});\n"
        "SELECT 'T', HEX(TABLE_SCHEMA), HEX(TABLE_NAME), TABLE_TYPE "
        f"FROM information_schema.TABLES WHERE HEX(TABLE_SCHEMA) IN ({wanted});\n"
        "SELECT 'O', HEX(TRIGGER_SCHEMA) FROM information_schema.TRIGGERS "
        f"WHERE HEX(TRIGGER_SCHEMA) IN ({wanted});\n"
        "SELECT 'O', HEX(ROUTINE_SCHEMA) FROM information_schema.ROUTINES "
        f"WHERE HEX(ROUTINE_SCHEMA) IN ({wanted});\n"
        "SELECT 'O', HEX(EVENT_SCHEMA) FROM information_schema.EVENTS "
        f"WHERE HEX(EVENT_SCHEMA) IN ({wanted});\n"
    )
    state = _State({n: [] for n in databases}, {n: 0 for n in databases}, {})
    for line in _run(client, db, sql, f"state of {db.container.name}", capture=True):
        kind, *fields = line.split("\t")
        schema = bytes.fromhex(fields[0]).decode()
        if kind == "S":
            state.defaults[schema] = (fields[1], fields[2])
        elif kind == "T" and fields[2] == "BASE TABLE":
            state.tables[schema].append(bytes.fromhex(fields[1]).decode())
        elif kind in ("T", "O"):  # a view (or a system view), a trigger, routine, event
            state.objects[schema] += 1
    return state


def _rename_sql(renames: list[tuple[str, str, str]]) -> str:
    if not renames:
        return ""
    pairs = ",\n  ".join(
        f"{quote(src)}.{quote(table)} TO {quote(dst)}.{quote(table)}" for src, table, dst in renames
    )
    return f"RENAME TABLE\n  {pairs};\n"


def _run(
    client: docker.DockerClient, db: DatabaseInfo, sql: str, what: str, capture: bool = False
) -> list[str]:
    """SQL on stdin (it names only our databases and the app's, no values);
    the client stops at the first error, so a script is cut where it failed."""
    cli = pick_client(client, db)
    cmd = [cli, f"--user={db.credentials.user}", "-N", "-B"]
    data = sql.encode()
    try:
        result, out = exec_capture(
            client, container_ref(db), cmd, environment=client_env(db), stdin=_Bytes(data),
            stdin_limit=len(data),
        )  # fmt: skip
    except ExecError as exc:
        raise DatabaseRestoreError(f"{what}: {exc}") from None
    if result.exit_code != 0:
        raise DatabaseRestoreError(f"{what}: {client_error_line(result, db) or 'no message'}")
    return out.decode("utf-8", "replace").splitlines() if capture else []


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int = -1) -> bytes:
        data, self._data = (self._data, b"") if size < 0 else (self._data[:size], self._data[size:])
        return data

    def close(self) -> None:
        pass
