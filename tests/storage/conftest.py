"""Storage backends under test.

The conformance suite asks for `storage` and runs once per entry of BACKENDS.
A new backend (S3 on moto, a retry wrapper) joins the suite by adding one
entry here; tests that need a tiny backend to fill up use SMALL_BACKENDS.
S3 runs against two real servers (tests/s3_servers.py), started once per
session: moto's server and s3rver, a fresh bucket for every test.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from storage.base import Storage
from storage.local import LocalStorage
from storage.memory import MemoryStorage
from storage.s3 import S3Storage
from storage.s3_config import MIB, S3Config
from tests.s3_servers import S3Server, moto_server, s3rver_server

# What the "small" backends can hold: room for a few hundred KiB, not for MiBs.
SMALL_CAPACITY = 1024 * 1024

BackendFactory = Callable[[Path], AbstractContextManager[Storage]]


@contextmanager
def local_backend(tmp_path: Path) -> Iterator[Storage]:
    # A root that does not exist yet: backends must create what they need.
    yield LocalStorage(tmp_path / "backups")


@contextmanager
def memory_backend(tmp_path: Path) -> Iterator[Storage]:
    yield MemoryStorage()


@contextmanager
def small_local_backend(tmp_path: Path) -> Iterator[Storage]:
    with mounted_tmpfs(tmp_path / "small", SMALL_CAPACITY) as mountpoint:
        yield LocalStorage(mountpoint)


@contextmanager
def small_memory_backend(tmp_path: Path) -> Iterator[Storage]:
    yield MemoryStorage(capacity_bytes=SMALL_CAPACITY)


BACKENDS: dict[str, BackendFactory] = {
    "local": local_backend,
    "memory": memory_backend,
}

SMALL_BACKENDS: dict[str, BackendFactory] = {
    "local-tmpfs": small_local_backend,
    "memory": small_memory_backend,
}


# Backend name -> the session fixture of its server. moto's keys get a
# location prefix, s3rver's do not: both ways of naming objects are covered.
S3_BACKENDS: dict[str, tuple[str, str]] = {
    "s3-moto": ("s3_moto", "backups/"),
    "s3-s3rver": ("s3_s3rver", ""),
}
# S3's smallest part: streamed writes of a few MiB already go multipart.
TEST_PART_SIZE = 5 * MIB


def s3_storage_on(
    server: S3Server, name: str = "s3", prefix: str = "", **settings: object
) -> S3Storage:
    """An S3Storage on a fresh bucket of SERVER; SETTINGS override S3Config's."""
    values: dict[str, object] = {
        "bucket": server.new_bucket(),
        "endpoint_url": server.endpoint_url,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "prefix": prefix,
        "part_size": TEST_PART_SIZE,
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "name": name,
    }
    values.update(settings)
    return S3Storage(S3Config(**values))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def s3_moto() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_s3rver() -> Iterator[S3Server]:
    with s3rver_server() as server:
        yield server


@pytest.fixture(params=list(S3_BACKENDS))
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each real S3 server in turn."""
    return request.getfixturevalue(S3_BACKENDS[request.param][0])


@pytest.fixture(params=list(BACKENDS) + list(S3_BACKENDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param in S3_BACKENDS:
        fixture, prefix = S3_BACKENDS[request.param]
        yield s3_storage_on(request.getfixturevalue(fixture), request.param, prefix)
        return
    with BACKENDS[request.param](tmp_path) as backend:
        yield backend


@pytest.fixture(params=list(SMALL_BACKENDS))
def small_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A backend that holds SMALL_CAPACITY bytes, to run out of space for real."""
    with SMALL_BACKENDS[request.param](tmp_path) as backend:
        yield backend


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A freshly mounted tmpfs of SMALL_CAPACITY bytes, unmounted afterwards."""
    with mounted_tmpfs(tmp_path / "tmpfs", SMALL_CAPACITY) as mountpoint:
        yield mountpoint


@contextmanager
def mounted_tmpfs(mountpoint: Path, size_bytes: int) -> Iterator[Path]:
    """A real, small filesystem (tests run as root), so ENOSPC comes from the
    kernel rather than from a mock. Skips when mounting is not allowed."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    source = f"storage-test-{uuid.uuid4().hex[:8]}"  # shows in /proc/mounts if one leaks
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", source, str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        # Lazy unmount if a failed test left a file open: never leak a mount.
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)
