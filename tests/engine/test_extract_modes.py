"""File modes come back exact under any umask, with a default ACL on the
staging dir, and for setuid/setgid/sticky files, whose bits a chown clears:
the guard for any fast path that gives a file its mode at creation and skips
the fchmod (one was tried: bench/README.md, Restore)."""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.restore.extract import extract_volumes
from tests.engine.test_extract import stream, write_archive

MODES = {
    "plain.txt": 0o644,
    "private.key": 0o600,
    "open.sh": 0o777,
    "none": 0o000,
    "readonly": 0o444,
    "setuid": 0o4755,
    "setgid": 0o2750,
    "sticky": 0o1644,
}


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    root = tmp_path / "volume"
    (root / "sub").mkdir(parents=True)
    for where in (root, root / "sub"):
        for name, mode in MODES.items():
            path = where / name
            path.write_bytes(name.encode() * 100)
            os.chown(path, 1000, 1001)
            os.chmod(path, mode)
    return root


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(root: Path) -> dict[str, tuple[int, int, int]]:
    found = {}
    for where in (root, root / "sub"):
        for name in MODES:
            st = os.lstat(where / name)
            found[str((where / name).relative_to(root))] = (
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
            )
    return found


def extract(volume: Path, stage: Path) -> None:
    out = io.BytesIO()
    write_archive(out, {"data": volume})
    stage.mkdir(mode=0o700)
    extract_volumes(stream(out), {"data": stage})


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o777])
def test_modes_are_exact_under_any_umask(
    volume: Path, tmp_path: Path, mask: int, umask: None
) -> None:
    os.umask(mask)
    extract(volume, tmp_path / "stage")
    assert modes(tmp_path / "stage") == modes(volume)


def _minimal_default_acl() -> bytes:
    # posix_acl_xattr: version 2, then (tag, perm, id) entries:
    # user::rwx, group::---, other::--- (a new file's mode is ANDed with it).
    entries = [(0x01, 7, 0xFFFFFFFF), (0x04, 0, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_modes_are_exact_under_a_default_acl(volume: Path, tmp_path: Path, umask: None) -> None:
    stage = tmp_path / "stage"
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        os.setxattr(probe, "system.posix_acl_default", _minimal_default_acl())
    except OSError as exc:
        pytest.skip(f"no POSIX ACLs on {tmp_path}: {exc.strerror}")
    # What the fast path would get wrong: the ACL, not the umask, masks the mode.
    (probe / "sub").mkdir()
    fd = os.open(probe / "sub" / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
    assert stat.S_IMODE(os.lstat(probe / "sub" / "f").st_mode) == 0o600
    stage.mkdir(mode=0o700)
    os.setxattr(stage, "system.posix_acl_default", _minimal_default_acl())
    out = io.BytesIO()
    write_archive(out, {"data": volume})
    extract_volumes(stream(out), {"data": stage})
    assert modes(stage) == modes(volume)
