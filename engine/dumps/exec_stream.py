"""Run one command inside a container through the Docker Engine API, with
stdout streamed to a sink in bounded chunks, stdin fed from a file, stderr
kept as a bounded tail, and the exit status from exec inspect.

Why not `container.exec_run`: it buffers the whole output in memory (a dump
can be many GB) and cannot feed stdin. Why not docker-py's
`exec_start(stream=True, demux=True)`: it cannot feed stdin either, and we
need the same code for dumps (stdout out) and restores (stdin in).

Secrets travel only in the exec *environment* (the JSON body of the exec
create call, never an argv, never shown by `docker inspect`, `docker top` or
`ps`), or in stdin. Nothing here logs the environment.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import docker
import docker.errors
import requests

from engine.errors import EngineError

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # read/write unit: memory stays O(CHUNK) whatever the dump size
STDERR_TAIL = 64 * 1024  # enough for any tool's error report, bounded for chatty tools
_HEADER = 8  # Docker's multiplexed stream: [type, 0, 0, 0, size (uint32 BE)]
_STDOUT, _STDERR = 1, 2
# Exit codes with which runc reports that the executable could not be started.
EXEC_NOT_FOUND = (126, 127)

Sink = Callable[[bytes], object]
# Every exec carries a random token in its environment, so that an exec we
# abandon can be found and killed (see _kill_abandoned).
TOKEN_VAR = "BACKUP_SERVICE_EXEC"  # noqa: S105 - a variable name, not a password


class ExecError(EngineError):
    """The command could not be run at all: the container is missing or not
    running, or the Docker engine refused or dropped the call."""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout_bytes: int
    stderr_tail: bytes  # the last STDERR_TAIL bytes of stderr
    stdin_complete: bool  # every byte offered on stdin reached the process

    def stderr_text(self) -> str:
        """The stderr tail as text, raw: database tools echo statements and
        rows there, so it never goes into a message or a log as it is; see
        engine.dumps.tool_errors.error_line."""
        return self.stderr_tail.decode("utf-8", "replace").strip()


class _Tail:
    """The last `limit` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit * 2:  # trim rarely, not on every chunk
            del self.data[: -self.limit]

    def value(self) -> bytes:
        return bytes(self.data[-self.limit :])


class _StdinFeeder(threading.Thread):
    """Copies a file into the exec's stdin, then half-closes the connection so
    the process sees EOF while we keep reading its output."""

    def __init__(self, sock: socket.socket, source: BinaryIO, limit: int | None) -> None:
        super().__init__(name="exec-stdin", daemon=True)
        self.sock = sock
        self.source = source
        self.limit = limit
        self.complete = False

    def run(self) -> None:
        sent = 0
        try:
            while self.limit is None or sent < self.limit:
                want = CHUNK if self.limit is None else min(CHUNK, self.limit - sent)
                data = self.source.read(want)
                if not data:
                    break
                self.sock.sendall(data)
                sent += len(data)
            self.complete = True
        except OSError:
            # The process exited without reading everything (e.g. it failed,
            # or `pg_restore --list` needs only the head). The caller decides
            # from `stdin_complete` and the exit code; this is not an error here.
            pass
        finally:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)


def exec_stream(
    client: docker.DockerClient,
    container: str,
    cmd: Sequence[str],
    *,
    environment: Mapping[str, str] | None = None,
    user: str = "",
    stdout: Sink | None = None,
    stderr: Sink | None = None,
    stdin: BinaryIO | None = None,
    stdin_limit: int | None = None,
) -> ExecResult:
    """Run CMD in CONTAINER (id or name). stdout goes to the STDOUT sink in
    chunks (discarded when None); stderr goes to the STDERR sink if given and
    is always kept as a bounded tail; STDIN (a binary file) is fed to the
    process, at most STDIN_LIMIT bytes. Raises ExecError if the command could
    not be started; a non-zero exit is *not* an error here."""
    api = client.api
    name = cmd[0] if cmd else "?"
    token = secrets.token_hex(16)
    env = {**(environment or {}), TOKEN_VAR: token}
    try:
        exec_id = api.exec_create(
            container,
            list(cmd),
            stdout=True,
            stderr=True,
            stdin=stdin is not None,
            tty=False,  # no TTY: binary-safe output, and stdout/stderr kept apart
            user=user,
            environment=env,
        )["Id"]
        response = api._post_json(
            api._url("/exec/{0}/start", exec_id),
            headers={"Connection": "Upgrade", "Upgrade": "tcp"},
            data={"Tty": False, "Detach": False},
            stream=True,
        )
        api._raise_for_status(response)
    except docker.errors.NotFound:
        raise ExecError(f"container {container} not found") from None
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise ExecError(f"container {container} is not running") from None
        raise ExecError(f"Docker refused to run {name} in {container}: {exc.explanation}") from None
    except requests.RequestException as exc:
        raise ExecError(f"Docker engine unreachable while starting {name}: {exc}") from None

    tail = _Tail(STDERR_TAIL)
    stdout_bytes = 0
    feeder: _StdinFeeder | None = None
    reader, sock = _hijacked(api, response)
    try:
        if stdin is not None:
            feeder = _StdinFeeder(sock, stdin, stdin_limit)
            feeder.start()
        for kind, chunk in _frames(reader, name):
            if kind == _STDOUT:
                stdout_bytes += len(chunk)
                if stdout is not None:
                    stdout(chunk)
            elif kind == _STDERR:
                tail.write(chunk)
                if stderr is not None:
                    stderr(chunk)
    except BaseException:
        # Our side failed (a sink error such as a full disk, the connection,
        # a task time limit). dockerd does not stop an exec whose client went
        # away: the tool would block on a full pipe forever, holding its
        # transaction or snapshot open in the database. Kill it.
        _close(sock, response, feeder)
        _kill_abandoned(client, container, token)
        raise
    _close(sock, response, feeder)
    exit_code = _exit_code(api, exec_id, name)
    return ExecResult(
        exit_code=exit_code,
        stdout_bytes=stdout_bytes,
        stderr_tail=tail.value(),
        stdin_complete=feeder.complete if feeder is not None else True,
    )


def exec_capture(
    client: docker.DockerClient,
    container: str,
    cmd: Sequence[str],
    *,
    environment: Mapping[str, str] | None = None,
    user: str = "",
    stdin: BinaryIO | None = None,
    stdin_limit: int | None = None,
    limit: int = 1 << 20,
) -> tuple[ExecResult, bytes]:
    """Run a short command and return its result and stdout (at most LIMIT
    bytes kept: a query's answer, a version string)."""
    out = bytearray()

    def keep(chunk: bytes) -> None:
        if len(out) < limit:
            out.extend(chunk[: limit - len(out)])

    result = exec_stream(
        client,
        container,
        cmd,
        environment=environment,
        user=user,
        stdout=keep,
        stdin=stdin,
        stdin_limit=stdin_limit,
    )
    return result, bytes(out)


def _close(
    sock: socket.socket, response: requests.Response, feeder: threading.Thread | None
) -> None:
    # shutdown() before close(): when the process exits without reading all
    # its stdin, dockerd stops reading while the connection stays open, and
    # the feeder blocks in sendall(); shutdown() wakes it up, close() alone
    # does not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
    response.close()
    if feeder is not None:
        feeder.join(timeout=30)


# Runs in the container: kill every process whose environment holds the token.
# The token is passed as $0 (an argument, not a secret), so this shell itself
# does not match.
_KILL_SCRIPT = (
    "for d in /proc/[0-9]*; do "
    'if tr "\\0" "\\n" < "$d/environ" 2>/dev/null | grep -qxF "$0"; then '
    'kill -9 "${d#/proc/}" 2>/dev/null; fi; done; true'
)


def _kill_abandoned(client: docker.DockerClient, container: str, token: str) -> None:
    try:
        # Attached (the default), so exec_start returns only once it is done.
        exec_id = client.api.exec_create(
            container, ["sh", "-c", _KILL_SCRIPT, f"{TOKEN_VAR}={token}"]
        )["Id"]
        client.api.exec_start(exec_id)
    except (docker.errors.APIError, requests.RequestException) as exc:
        log.warning("could not stop an abandoned exec in %s: %s", container, exc)


def _hijacked(api: Any, response: requests.Response) -> tuple[Any, socket.socket]:
    """The upgraded connection of an exec start: a buffered reader for the
    output and the raw socket for stdin.

    Reading must go through the response's BufferedReader, not the raw
    socket: while parsing the HTTP headers it may already have read the first
    bytes of output. docker-py exposes no public API for this (its
    `exec_start(socket=True)` hands back the raw socket), hence the private
    attributes, the same ones docker-py itself uses."""
    reader = response.raw._fp.fp
    raw = api._get_raw_response_socket(response)
    sock = getattr(raw, "_sock", raw)  # SocketIO over a unix socket, or the socket itself
    # No read timeout: a dump tool may think for minutes before its next byte
    # (the caller's task time limit bounds the whole run instead).
    sock.settimeout(None)
    return reader, sock


def _frames(reader: Any, name: str) -> Iterator[tuple[int, bytes]]:
    """Yield (stream type, payload piece) from Docker's multiplexed stream.

    Reads whatever has arrived, up to CHUNK bytes at a time (read1: one
    recv, not one per frame header and payload), and cuts it into frames
    in memory; dockerd sends frames of a few KiB, so this saves most of the
    per-frame system calls. Errors of the connection become ExecError;
    errors of whoever consumes the pieces are theirs."""
    header = b""  # a frame header split across reads
    kind, remaining = 0, 0
    while True:
        try:
            data = reader.read1(CHUNK)
        except OSError as exc:
            raise ExecError(f"connection to the Docker engine lost while running {name}") from exc
        if not data:
            if remaining or header:
                raise ExecError(f"connection to the Docker engine lost while running {name}")
            return
        pos, end = 0, len(data)
        while pos < end:
            if remaining == 0:
                take = min(_HEADER - len(header), end - pos)
                header += data[pos : pos + take]
                pos += take
                if len(header) < _HEADER:
                    break
                kind, remaining = header[0], int.from_bytes(header[4:8], "big")
                header = b""
                continue
            take = min(remaining, end - pos)
            yield kind, data[pos : pos + take] if take < end else data
            pos += take
            remaining -= take


def _exit_code(api: Any, exec_id: str, name: str) -> int:
    # The stream can end a moment before dockerd records the exit: poll,
    # briefly at first (most execs are short queries), then less often.
    deadline = time.monotonic() + 30
    pause = 0.002
    while True:
        try:
            info = api.exec_inspect(exec_id)
        except docker.errors.APIError as exc:
            raise ExecError(
                f"could not read the exit status of {name}: {exc.explanation}"
            ) from None
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        if time.monotonic() > deadline:
            raise ExecError(f"{name} did not report an exit status")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
