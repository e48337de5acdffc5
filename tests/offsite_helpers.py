"""Helpers for the off-site tests: a real S3 server (moto's, from
tests/s3_servers.py), an `s3` location configured on it exactly as the
environment would (backup_project.s3_settings), completed snapshots whose
archive really is on the local disk, a bandwidth-limited TCP relay (so a
real upload lasts long enough to be killed in the middle), and real Celery
workers started with the location's environment."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backup_project.env import Env
from backup_project.s3_settings import parse_location
from snapshots.models import Snapshot
from storage.local import LocalStorage
from tests.conftest import REPO_ROOT, subprocess_env
from tests.s3_servers import S3Server, moto_server, s3rver_server

PART_MB = 5  # S3's smallest part: a few MiB make a multipart upload


def s3_env(server: S3Server, bucket: str, endpoint: str | None = None) -> dict[str, str]:
    return {
        "BACKUP_S3_BUCKET": bucket,
        "BACKUP_S3_ENDPOINT_URL": endpoint or server.endpoint_url,
        "BACKUP_S3_ACCESS_KEY_ID": server.access_key,
        "BACKUP_S3_SECRET_ACCESS_KEY": server.secret_key,
        "BACKUP_S3_PART_SIZE_MB": str(PART_MB),
        "BACKUP_S3_REGION": "us-east-1",
    }


def configure_s3(settings: Any, env: dict[str, str]) -> dict[str, Any]:
    """Point the `s3` location of this process at ENV's server, parsed as at startup.
    Fewer retries than production, so a dead endpoint fails in seconds."""
    location = parse_location(Env(env), "s3")
    assert location is not None
    location |= {"max_attempts": 2, "part_attempts": 2, "connect_timeout": 2.0}
    settings.BACKUP_S3_STORAGES = {"s3": location}
    return location


@pytest.fixture(scope="session")
def moto() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3rver() -> Iterator[S3Server]:
    with s3rver_server() as server:
        yield server


@pytest.fixture(params=["moto", "s3rver"])
def s3_location(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> dict[str, Any]:
    """A fresh bucket on each real server in turn (moto, s3rver) as the `s3`
    location, backups under tmp_path. Use with `moto` and `s3rver` imported."""
    s3 = request.getfixturevalue(request.param)
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    bucket = s3.new_bucket()
    configure_s3(settings, s3_env(s3, bucket))
    return {"server": s3, "client": s3.client(), "bucket": bucket}


@pytest.fixture
def offsite(settings: Any, tmp_path: Path, moto: S3Server) -> dict[str, Any]:
    """A fresh bucket on moto as the `s3` location, backups under tmp_path."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    bucket = moto.new_bucket()
    env = s3_env(moto, bucket)
    configure_s3(settings, env)
    return {"server": moto, "bucket": bucket, "env": env, "client": moto.client()}


def stored_snapshot(
    data: bytes, *, location: str, app_id: str = "offsite-app", host_id: str | None = None
) -> Snapshot:
    """A completed snapshot whose archive (DATA) and sidecar are on the local disk."""
    from django.conf import settings

    backup_id = f"backup_20260105_103000_{secrets.token_hex(3)}"
    key = f"{app_id}/{backup_id}.tar.zst"
    digest = hashlib.sha256(data).hexdigest()
    local = LocalStorage(settings.BACKUP_ROOT)
    with local.open_writer(key) as writer:
        writer.write(data)
    with local.open_writer(f"{key}.sha256") as writer:
        writer.write(f"{digest}  {backup_id}.tar.zst\n".encode())
    return Snapshot.objects.create(
        backup_id=backup_id, app_id=app_id, host_id=host_id or settings.BACKUP_HOST_ID,
        status=Snapshot.Status.COMPLETED, storage_location=location, storage_key=key,
        size_bytes=len(data), sha256=digest,
    )  # fmt: skip


def s3_object(client: Any, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    """The object's bytes and its HEAD, read with a client of the test's own."""
    head = client.head_object(Bucket=bucket, Key=key)
    return client.get_object(Bucket=bucket, Key=key)["Body"].read(), head


# -- a slow relay ------------------------------------------------------------------


class SlowRelay:
    """A TCP relay to TARGET_PORT that passes at most RATE bytes per second
    towards the server (the upload direction); the answers go at full speed."""

    def __init__(self, target_port: int, rate: int, cut_after: int | None = None) -> None:
        self.target_port = target_port
        self.rate = rate
        # After this many bytes up, every connection is cut and new ones are
        # refused: the network gone in the middle of an upload.
        self.cut_after = cut_after
        self.sent = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        try:
            while data := source.recv(64 * 1024):
                sink.sendall(data)
                if slow:
                    self.sent += len(data)
                    if self.cut_after is not None and self.sent > self.cut_after:
                        self.cut()
                        return
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        self.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


# -- real workers ------------------------------------------------------------------


def start_worker(queue: str, log_path: Path, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A real `celery worker` on QUEUE, with the S3 location in its environment."""
    from backup_project.celery import app

    env = subprocess_env() | extra_env | {"BACKUP_TASK_QUEUE": queue}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backup_project", "worker", "-Q", queue,
             "--pool", "solo", "--loglevel", "INFO", "--hostname", f"{queue}@%h"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited:\n{log_path.read_text()[-3000:]}")
        if app.control.ping(destination=[f"{queue}@{os.uname().nodename}"], timeout=1):
            return proc
    proc.kill()
    raise AssertionError(f"worker did not answer:\n{log_path.read_text()[-3000:]}")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
