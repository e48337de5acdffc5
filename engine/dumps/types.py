"""What a database dump produces (DumpFile), and the helpers every engine
shares: archive and spool names, running a dump tool into its spool file
(size and SHA-256 computed on the way), progress throttling, scrubbing
secrets from tool messages, container state and `*_FILE` passwords."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import docker

from engine.dumps.exec_stream import CHUNK, EXEC_NOT_FOUND, ExecError, exec_capture, exec_stream
from engine.dumps.tool_errors import error_line
from engine.errors import DatabaseDumpError, DatabaseRestoreError
from engine.inventory import DatabaseInfo
from engine.progress import Progress, ProgressCallback
from engine.secret import Secret

DumpFormat = Literal["sql", "pg_custom", "pg_globals_sql", "mongo_archive_gz"]

# File name suffix of each format inside databases/<container>/.
EXTENSIONS: dict[str, str] = {
    "sql": ".sql",
    "pg_custom": ".dump",
    "pg_globals_sql": ".sql",
    "mongo_archive_gz": ".archive.gz",
}
GLOBALS_NAME = "_globals"  # pg_dumpall --globals-only: roles and tablespaces
MONGO_ALL_NAME = "all"  # one mongodump archive holds every database

PROGRESS_EVERY = 8 << 20  # report at most every 8 MiB ...
PROGRESS_MIN_SECONDS = 0.5  # ... and at most twice a second


@dataclass(frozen=True)
class DumpFile:
    container: str  # container name, e.g. wordpress_ab12c-mariadb-1
    engine: str  # mysql, mariadb, postgres, mongo
    server_version: str  # as the server reports it, e.g. 10.11.6-MariaDB-0+deb12u1
    database: str | None  # None: not one database (pg globals, the mongo archive)
    format: DumpFormat
    path: Path  # the spool file
    size: int
    sha256: str
    archive_name: str  # databases/<container>/<database>.<ext>
    # Rows per table, counted from the dump as it was made (row_counts.py):
    # what a restore drill compares with. None: not counted (older archives,
    # formats without tables).
    row_counts: dict[str, int] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The entry for backup.json (no local path: it means nothing elsewhere)."""
        counts = {} if self.row_counts is None else {"row_counts": self.row_counts}
        return {
            "container": self.container,
            "engine": self.engine,
            "server_version": self.server_version,
            "database": self.database,
            "format": self.format,
            "size": self.size,
            "sha256": self.sha256,
            "archive_name": self.archive_name,
            **counts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> DumpFile:
        """Rebuild a DumpFile from backup.json, the dump extracted at PATH."""
        return cls(
            container=data["container"],
            engine=data["engine"],
            server_version=data["server_version"],
            database=data["database"],
            format=data["format"],
            path=path,
            size=int(data["size"]),
            sha256=data["sha256"],
            archive_name=data["archive_name"],
            row_counts=data.get("row_counts"),
        )


def safe_name(name: str) -> str:
    """NAME made safe as one path component: PostgreSQL allows '/' and '..'
    as database names, MySQL allows almost anything. Percent-encoding is
    reversible and leaves ordinary names (wordpress, odoo_prod) unchanged."""
    encoded = quote(name, safe="-_.")
    if encoded.startswith("."):  # no hidden files, no "." or ".."
        encoded = "%2E" + encoded[1:]
    return encoded or "%00"


def archive_name(container: str, stem: str, fmt: DumpFormat) -> str:
    return f"databases/{safe_name(container)}/{safe_name(stem)}{EXTENSIONS[fmt]}"


def tail_lines(text: str, limit: int = 2000) -> str:
    """The end of a tool's stderr, short enough for an error message."""
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class Throttled:
    """A progress callback called at most every PROGRESS_EVERY bytes and
    PROGRESS_MIN_SECONDS, so a fast stream does not flood a Celery backend."""

    def __init__(self, progress: ProgressCallback, phase: str, detail: str, total: int | None):
        self.progress = progress
        self.phase = phase
        self.detail = detail
        self.total = total
        self.done = 0
        self._last_bytes = 0
        self._last_time = 0.0

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if (
            self.done - self._last_bytes >= PROGRESS_EVERY
            and now - self._last_time >= PROGRESS_MIN_SECONDS
        ):
            self._last_bytes, self._last_time = self.done, now
            self.report()

    def report(self) -> None:
        self.progress(Progress(self.phase, self.done, self.total, self.detail))


class SpoolWriter:
    """Writes a dump to its spool file (mode 0600: dumps hold password
    hashes and user data), hashing and counting as the bytes pass."""

    def __init__(self, path: Path, progress: Throttled) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.path = path
        self.file = os.fdopen(fd, "wb", buffering=CHUNK)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.progress = progress

    def write(self, chunk: bytes) -> None:
        try:
            self.file.write(chunk)
        except OSError as exc:  # e.g. the spool disk is full
            raise DatabaseDumpError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.sha256.update(chunk)
        self.size += len(chunk)
        self.progress.add(len(chunk))

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as exc:
            raise DatabaseDumpError(f"cannot write {self.path}: {exc.strerror or exc}") from None


def container_ref(db: DatabaseInfo) -> str:
    """How to address the container in API calls: its name (what Compose
    keeps stable, and what messages show), else its id."""
    return db.container.name.lstrip("/") or db.container.id


def dump_to_spool(
    client: docker.DockerClient,
    db: DatabaseInfo,
    cmd: list[str],
    environment: dict[str, str],
    path: Path,
    progress: Throttled,
    what: str,
) -> tuple[int, str]:
    """Run a dump tool in the database container with stdout streamed to
    PATH; return (size, sha256). Any failure removes PATH and raises
    DatabaseDumpError naming WHAT, with the tool's error line (no secret,
    no data: see tool_errors)."""
    writer = SpoolWriter(path, progress)
    try:
        try:
            result = exec_stream(
                client, container_ref(db), cmd, environment=environment, stdout=writer.write
            )
        finally:
            writer.close()
        secret = db.credentials.password
        if result.exit_code in EXEC_NOT_FOUND:
            raise DatabaseDumpError(f"{what}: {cmd[0]} is not available in {db.container.name}")
        if result.exit_code != 0:
            raise DatabaseDumpError(
                f"{what}: {cmd[0]} exited with status {result.exit_code}: "
                f"{error_line(db.engine, result.stderr_text(), secret) or 'no message'}"
            )
        if writer.size == 0:
            raise DatabaseDumpError(f"{what}: {cmd[0]} produced an empty dump")
    except ExecError as exc:
        path.unlink(missing_ok=True)
        raise DatabaseDumpError(f"{what}: {exc}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    progress.report()
    return writer.size, writer.sha256.hexdigest()


def with_password_file(
    client: docker.DockerClient, db: DatabaseInfo, error: type[DatabaseDumpError]
) -> DatabaseInfo:
    """DB with its password read from its `*_FILE` secret inside the
    container, when discovery kept only the path (it could not read it then).
    Read with `cat` into our memory: the path is in argv, never the value.
    Trailing newlines are dropped, as the images' entrypoints do."""
    credentials = db.credentials
    path = getattr(credentials, "password_file", None)
    if credentials.password is not None or not path:
        return db
    try:
        result, out = exec_capture(client, container_ref(db), ["cat", "--", path], limit=64 << 10)
    except ExecError as exc:
        raise error(str(exc)) from None
    if result.exit_code != 0:
        raise error(f"{db.container.name}: cannot read the password file {path}")
    value = out.decode("utf-8", "replace").rstrip("\n")
    password = Secret(value) if value else None
    return replace(db, credentials=replace(credentials, password=password))


def require_running(
    client: docker.DockerClient,
    db: DatabaseInfo,
    error: type[DatabaseDumpError] = DatabaseRestoreError,
) -> None:
    """Fail at once when waiting for the container is pointless."""
    try:
        state = client.api.inspect_container(container_ref(db))["State"]
    except docker.errors.NotFound:
        raise error(f"container {db.container.name} not found") from None
    if state.get("Status") in ("exited", "dead", "created"):
        raise error(f"container {db.container.name} is {state.get('Status')}")


class CountingReader:
    """A file whose reads are reported as restore progress."""

    def __init__(self, path: Path, progress: Throttled) -> None:
        self.file = path.open("rb")
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.progress.add(len(data))
        return data

    def close(self) -> None:
        self.file.close()


def spool_path(spool_dir: Path, container: str, stem: str, fmt: DumpFormat) -> Path:
    return spool_dir / safe_name(container) / (safe_name(stem) + EXTENSIONS[fmt])


def remove_quietly(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


_VERSION = re.compile(r"\d+(\.\d+)+")


def first_version(text: str) -> str:
    """The first dotted version number in TEXT, or TEXT stripped."""
    match = _VERSION.search(text)
    return match.group(0) if match else text.strip()
