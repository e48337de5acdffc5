"""Real S3 servers for the storage tests: moto's server (a subprocess, full
S3 API including ListParts and ListMultipartUploads) and s3rver (Node, checks
credentials, has neither ListParts, ListMultipartUploads nor Abort).

scripts/ensure_s3_servers.sh installs both (make test runs it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

REPO_ROOT = Path(__file__).resolve().parent.parent
S3RVER_BIN = REPO_ROOT / ".s3rver" / "node_modules" / ".bin" / "s3rver"
MOTO_BIN = Path(sys.executable).parent / "moto_server"


_CLIENTS: dict[str, object] = {}


@dataclass(frozen=True)
class S3Server:
    kind: str  # "moto" | "s3rver"
    endpoint_url: str
    access_key: str
    secret_key: str
    lists_parts: bool  # ListParts and ListMultipartUploads
    port: int

    def client(self) -> Any:
        # One admin client per server: building clients is slow on a busy host.
        if self.endpoint_url not in _CLIENTS:
            _CLIENTS[self.endpoint_url] = boto3.session.Session(
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name="us-east-1",
            ).client("s3", endpoint_url=self.endpoint_url)
        return _CLIENTS[self.endpoint_url]

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} at start")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within 30 s")


@contextmanager
def _running(command: list[str], port: int, what: str, env: dict[str, str]) -> Iterator[None]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        _wait_for_port(port, process, what)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def moto_server() -> Iterator[S3Server]:
    if not MOTO_BIN.exists():
        raise RuntimeError(f"{MOTO_BIN} is missing: pip install -r requirements-dev.txt")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with _running([str(MOTO_BIN), "-H", "127.0.0.1", "-p", str(port)], port, "moto_server", env):
        yield S3Server("moto", f"http://127.0.0.1:{port}", "testing", "moto-secret", True, port)


@contextmanager
def s3rver_server() -> Iterator[S3Server]:
    node = shutil.which("node")
    if node is None or not S3RVER_BIN.exists():
        raise RuntimeError("s3rver is missing: run scripts/ensure_s3_servers.sh")
    port = free_port()
    directory = tempfile.mkdtemp(prefix="s3rver-")
    command = [
        node,
        str(S3RVER_BIN),
        "--directory",
        directory,
        "--port",
        str(port),
        "--address",
        "127.0.0.1",
        "--silent",
    ]
    try:
        with _running(command, port, "s3rver", dict(os.environ)):
            yield S3Server("s3rver", f"http://127.0.0.1:{port}", "S3RVER", "S3RVER", False, port)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
