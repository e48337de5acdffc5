"""MongoDB: one `mongodump --archive --gzip` of the whole server, restored
with `mongorestore --archive --gzip --drop`.

Implemented from the MongoDB Database Tools documentation; no MongoDB server
can run where this was written (see tests/engine/test_dumps_mongo.py for
what is tested and what is not).

The password never goes on a command line: the Database Tools (>= 100.3.0)
read it from a YAML file named by --config, "the recommended way" per their
documentation. We write that file inside the container with mode 0600, as
the user the tools run as, and remove it when the tool has finished.

Consistency: without --oplog (replica sets only) mongodump reads each
collection consistently, but not all collections at one instant."""

from __future__ import annotations

import io
import logging
import re
import secrets
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker

from engine.dumps.exec_stream import EXEC_NOT_FOUND, ExecError, exec_capture, exec_stream
from engine.dumps.tool_errors import error_line
from engine.dumps.types import (
    MONGO_ALL_NAME,
    CountingReader,
    DatabaseRestoreError,
    DumpFile,
    Throttled,
    archive_name,
    container_ref,
    dump_to_spool,
    first_version,
    remove_quietly,
    require_running,
    spool_path,
    tail_lines,
)
from engine.errors import DatabaseDumpError
from engine.inventory import DatabaseInfo
from engine.progress import ProgressCallback, no_progress

log = logging.getLogger(__name__)

# MONGO_INITDB_ROOT_USERNAME is created in the admin database.
AUTH_DATABASE = "admin"
MIN_TOOLS = (100, 3, 0)  # first Database Tools release with --config
ARCHIVE_MAGIC = (0x8199E26D).to_bytes(4, "little")  # opens every mongodump archive
TERMINATOR = b"\xff\xff\xff\xff"
MAX_BSON = 48 << 20  # 16 MiB documents; generous for archive headers
SHELLS = ("mongosh", "mongo")  # mongo <= 5 images ship only the legacy shell


def dump_mongo(
    client: docker.DockerClient,
    db: DatabaseInfo,
    spool_dir: Path,
    progress: ProgressCallback = no_progress,
) -> list[DumpFile]:
    """One archive of every database on the server."""
    name = db.container.name
    version = _server_version(client, db)
    _require_tools(client, db, "mongodump", DatabaseDumpError)
    path = spool_path(spool_dir, name, MONGO_ALL_NAME, "mongo_archive_gz")
    what = f"dump of {name}"
    throttled = Throttled(progress, "dumping", f"{name}/{MONGO_ALL_NAME}", None)
    with _config_file(client, db, DatabaseDumpError) as config:
        cmd = ["mongodump", "--archive", "--gzip", *_auth_args(db, config)]
        size, sha256 = dump_to_spool(client, db, cmd, {}, path, throttled, what)
    try:
        verify_mongo_archive(path)
    except DatabaseDumpError as exc:
        remove_quietly([path])
        raise DatabaseDumpError(f"{what}: {exc}") from None
    return [
        DumpFile(
            container=name,
            engine="mongo",
            server_version=version,
            database=None,
            format="mongo_archive_gz",
            path=path,
            size=size,
            sha256=sha256,
            archive_name=archive_name(name, MONGO_ALL_NAME, "mongo_archive_gz"),
        )
    ]


def restore_mongo(
    client: docker.DockerClient,
    db: DatabaseInfo,
    dumps: Sequence[DumpFile],
    progress: ProgressCallback = no_progress,
) -> None:
    """--drop: each collection in the archive replaces the current one.
    --stopOnError: mongorestore otherwise logs failed inserts and exits 0."""
    name = db.container.name
    _require_tools(client, db, "mongorestore", DatabaseRestoreError)
    for dump in dumps:
        if dump.format != "mongo_archive_gz":
            raise DatabaseRestoreError(f"cannot restore a {dump.format} dump into {name}")
        what = f"restore of {name}"
        throttled = Throttled(progress, "restoring", f"{name}/{MONGO_ALL_NAME}", dump.size)
        with _config_file(client, db, DatabaseRestoreError) as config:
            cmd = [
                "mongorestore",
                "--archive",  # no value: read the archive from stdin
                "--gzip",
                "--drop",
                "--stopOnError",
                *_auth_args(db, config),
            ]
            reader = CountingReader(dump.path, throttled)
            try:
                result = exec_stream(client, container_ref(db), cmd, stdin=reader)
            except ExecError as exc:
                raise DatabaseRestoreError(f"{what}: {exc}") from None
            finally:
                reader.close()
        if result.exit_code != 0 or not result.stdin_complete:
            stderr = error_line("mongo", result.stderr_text(), db.credentials.password)
            raise DatabaseRestoreError(
                f"{what}: mongorestore exited with status {result.exit_code}: "
                f"{stderr or 'no message'}"
            )
        throttled.report()


def wait_mongo(client: docker.DockerClient, db: DatabaseInfo, timeout: float) -> None:
    """Until the server answers a ping (which needs no authentication)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        require_running(client, db)
        for shell in SHELLS:
            cmd = [shell, "--quiet", "--norc", "--eval", "db.adminCommand({ping: 1}).ok"]
            try:
                result, _ = exec_capture(client, container_ref(db), cmd)
            except ExecError as exc:
                last = str(exc)
                break
            if result.exit_code in EXEC_NOT_FOUND:
                last = f"{shell} not found"
                continue
            if result.exit_code == 0:
                return
            last = error_line("mongo", result.stderr_text(), db.credentials.password)
            last = last or f"{shell} exited with status {result.exit_code}"
            break
        if time.monotonic() > deadline:
            raise DatabaseRestoreError(
                f"{db.container.name} did not accept connections within {timeout:.0f}s: {last}"
            )
        time.sleep(0.5)


def verify_mongo_archive(path: Path) -> dict[str, Any]:
    """Check a gzipped mongodump archive without a server: the gzip stream
    is complete and its CRC matches (a cut file fails), it opens with the
    archive magic number, and it is a well-formed sequence of BSON documents
    and terminators ending with a terminator. Collections' contents are not
    decoded."""
    walker = _ArchiveWalker()
    inflater = zlib.decompressobj(wbits=31)  # gzip framing, CRC-32 and length checked
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
            try:
                walker.feed(inflater.decompress(chunk))
            except zlib.error as exc:
                raise DatabaseDumpError(f"the archive is not valid gzip: {exc}") from None
            if inflater.eof and (inflater.unused_data or f.read(1)):
                raise DatabaseDumpError("the archive has data after its gzip stream")
    if not inflater.eof:
        raise DatabaseDumpError("the archive is truncated (gzip stream not finished)")
    walker.finish()
    return {
        "format": "mongo_archive_gz",
        "size": size,
        "uncompressed_size": walker.total,
        "bson_documents": walker.documents,
        "checks": ["gzip", "magic", "structure"],
    }


class _ArchiveWalker:
    """Streams over the decompressed archive holding at most 4 bytes."""

    def __init__(self) -> None:
        self.total = 0
        self.documents = 0
        self.pending = b""  # bytes of a magic or length prefix not yet complete
        self.skip = 0  # bytes of the current document still to pass
        self.started = False
        self.last_was_terminator = False

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        view = memoryview(data)
        while view:
            if self.skip:
                step = min(self.skip, len(view))
                self.skip -= step
                if self.skip == 0 and view[step - 1] != 0:
                    raise DatabaseDumpError("corrupt archive (a BSON document does not end in 0)")
                view = view[step:]
                continue
            need = 4 - len(self.pending)
            self.pending += bytes(view[:need])
            view = view[need:]
            if len(self.pending) < 4:
                return
            word, self.pending = self.pending, b""
            self._item(word)

    def _item(self, word: bytes) -> None:
        if not self.started:
            if word != ARCHIVE_MAGIC:
                raise DatabaseDumpError("not a mongodump archive (magic number missing)")
            self.started = True
            return
        if word == TERMINATOR:
            self.last_was_terminator = True
            return
        length = int.from_bytes(word, "little")
        if not 5 <= length <= MAX_BSON:
            raise DatabaseDumpError(f"corrupt archive (BSON length {length})")
        self.documents += 1
        self.skip = length - 4
        self.last_was_terminator = False

    def finish(self) -> None:
        if not self.started:
            raise DatabaseDumpError("not a mongodump archive (empty)")
        if self.skip or self.pending or not self.last_was_terminator:
            raise DatabaseDumpError("the archive is truncated (does not end with a terminator)")


# -- Helpers ------------------------------------------------------------------


def _auth_args(db: DatabaseInfo, config: str | None) -> list[str]:
    """Authentication only with a password: --username alone would make the
    tool prompt for one. The username is not a secret; the password is in
    the --config file."""
    if config is None:
        return []
    return [
        f"--username={db.credentials.user}",
        f"--authenticationDatabase={AUTH_DATABASE}",
        f"--config={config}",
    ]


@contextmanager
def _config_file(
    client: docker.DockerClient, db: DatabaseInfo, error: type[DatabaseDumpError]
) -> Iterator[str | None]:
    """A YAML file holding the password inside the container, for --config;
    None when there is no password."""
    password = db.credentials.password
    if not password:
        yield None
        return
    path = f"/tmp/.backup-service-{secrets.token_hex(8)}.yaml"
    content = f"password: {yaml_quote(password.reveal())}\n".encode()
    try:
        # umask 077 before the file exists: it is never readable by others,
        # not even for an instant; created by the user the tools run as.
        result, _ = exec_capture(
            client,
            container_ref(db),
            ["sh", "-c", 'umask 077 && cat > "$0"', path],
            stdin=io.BytesIO(content),
        )
        if result.exit_code != 0 or not result.stdin_complete:
            raise error(
                f"{db.container.name}: could not write the credentials file: "
                f"{tail_lines(result.stderr_text(), 500) or result.exit_code}"
            )
        yield path
    except ExecError as exc:
        raise error(str(exc)) from None
    finally:
        _remove(client, db, path)


def _remove(client: docker.DockerClient, db: DatabaseInfo, path: str) -> None:
    try:
        result, _ = exec_capture(client, container_ref(db), ["rm", "-f", path])
        if result.exit_code != 0:
            log.warning("could not remove %s in %s", path, db.container.name)
    except ExecError as exc:
        log.warning("could not remove %s in %s: %s", path, db.container.name, exc)


def yaml_quote(value: str) -> str:
    """VALUE as a YAML double-quoted scalar: printable ASCII as is, the
    rest escaped (\\uXXXX / \\UXXXXXXXX), so no character can end the
    string, fold a line or be read as anything else."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_TOOLS_VERSION = re.compile(r"version:\s*r?(\d+)\.(\d+)\.(\d+)")


def _require_tools(
    client: docker.DockerClient, db: DatabaseInfo, tool: str, error: type[DatabaseDumpError]
) -> None:
    """The tool exists and, when we must authenticate, knows --config."""
    try:
        result, out = exec_capture(client, container_ref(db), [tool, "--version"])
    except ExecError as exc:
        raise error(str(exc)) from None
    if result.exit_code in EXEC_NOT_FOUND:
        raise error(f"{tool} is not available in {db.container.name}")
    if not db.credentials.password:
        return
    match = _TOOLS_VERSION.search(out.decode("utf-8", "replace"))
    found = tuple(int(g) for g in match.groups()) if match else None
    if found is None or found < MIN_TOOLS:
        raise error(
            f"{tool} in {db.container.name} is too old to read a password from --config "
            "(needs MongoDB Database Tools 100.3.0 or later); refusing to put it on a command line"
        )


def _server_version(client: docker.DockerClient, db: DatabaseInfo) -> str:
    """`mongod --version` ("db version v7.0.5"): no connection, no credentials."""
    try:
        result, out = exec_capture(client, container_ref(db), ["mongod", "--version"])
    except ExecError as exc:
        raise DatabaseDumpError(str(exc)) from None
    if result.exit_code != 0:
        return "unknown"
    first = out.decode("utf-8", "replace").strip().splitlines()
    return first_version(first[0]) if first else "unknown"
