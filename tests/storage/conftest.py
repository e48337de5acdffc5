"""Storage backends under test.

The conformance suite asks for `storage` and runs once per entry of BACKENDS.
A new backend (S3 on moto, a retry wrapper) joins the suite by adding one
entry here; tests that need a tiny backend to fill up use SMALL_BACKENDS.
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


@pytest.fixture(params=list(BACKENDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
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
