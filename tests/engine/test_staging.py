"""The staging pass (engine.restore.staging) on real archives and real
files: one read extracts and checks the stored bytes' SHA-256, the sidecar,
the decryption and every member; anything wrong is ArchiveRefused and the
staging dirs are discarded. The free-space rule is a pure function, checked
here with a given statvfs result (the real small filesystem case is
tests/test_restore_pipeline.py's tmpfs)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.age import AgeWriter, generate_identity
from engine.progress import no_progress
from engine.restore.staging import (
    HEADROOM_BYTES,
    ArchiveRefused,
    Staged,
    StoredArchive,
    stage,
    why_not_while_running,
)
from engine.restore.stream import StoredPass
from engine.steps import no_guard
from tests.engine.test_extract import write_archive
from tests.engine.treegen import make_tree, snapshot


def _archive(tmp_path: Path, recipient: str | None = None) -> tuple[bytes, Path]:
    root = tmp_path / "volume"
    make_tree(root)
    out = io.BytesIO()
    write_archive(out, {"files": root})
    data = out.getvalue()
    if recipient is not None:
        encrypted = io.BytesIO()
        with AgeWriter(encrypted, recipients=[recipient]) as writer:
            writer.write(data)
        data = encrypted.getvalue()
    return data, root


def _stored(
    data: bytes, sha256: str | None = None, sidecar: str | None = None, **pass_options: Any
) -> StoredArchive:
    @contextmanager
    def open_pass() -> Iterator[StoredPass]:
        stored = StoredPass(io.BytesIO(data), compression="zstd", encrypted=False, **pass_options)
        try:
            yield stored
        finally:
            stored.close()

    return StoredArchive(
        backup_id="backup_x", open=open_pass,
        sha256=sha256 or hashlib.sha256(data).hexdigest(), sidecar=lambda: sidecar,
    )  # fmt: skip


def _staged(tmp_path: Path) -> Staged:
    data_dir = tmp_path / "vol" / "_data"
    data_dir.mkdir(parents=True)
    (data_dir / "live.txt").write_text("in use")
    return Staged(data_dirs={"files": data_dir}, spool_dir=tmp_path / "spool")


def test_one_pass_extracts_and_checks_the_stored_file(tmp_path: Path) -> None:
    data, root = _archive(tmp_path)
    staged = _staged(tmp_path)
    stage(staged, _stored(data, sidecar=hashlib.sha256(data).hexdigest()), no_progress, no_guard)
    assert snapshot(staged.stages["files"]) == snapshot(root)
    assert (staged.data_dirs["files"] / "live.txt").read_text() == "in use"  # untouched


@pytest.mark.parametrize("which", ["record", "sidecar"])
def test_a_stored_file_that_does_not_hash_as_recorded_is_refused(
    tmp_path: Path, which: str
) -> None:
    """Every member is fine; the stored bytes are not the ones recorded
    (or not the sidecar's): refused all the same, as deep verify does."""
    data, _ = _archive(tmp_path)
    other = hashlib.sha256(b"another file").hexdigest()
    stored = _stored(data, sha256=other) if which == "record" else _stored(data, sidecar=other)
    staged = _staged(tmp_path)
    with pytest.raises(ArchiveRefused, match=f"failed validation: .*{which}"):
        stage(staged, stored, no_progress, no_guard)
    staged.discard(None)
    assert sorted(os.listdir(tmp_path / "vol")) == ["_data"]
    assert not staged.spool_dir.exists()


def test_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    data, _ = _archive(tmp_path)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    staged = _staged(tmp_path)
    with pytest.raises(ArchiveRefused, match="failed validation"):
        stage(staged, _stored(bytes(flipped), sha256=hashlib.sha256(data).hexdigest()),
              no_progress, no_guard)  # fmt: skip
    staged.discard(None)
    assert sorted(os.listdir(tmp_path / "vol")) == ["_data"]


def test_an_archive_this_key_cannot_decrypt_is_refused(tmp_path: Path) -> None:
    _, recipient = generate_identity()
    other_identity, _ = generate_identity()
    data, _ = _archive(tmp_path, recipient)

    @contextmanager
    def open_pass() -> Iterator[StoredPass]:
        stored = StoredPass(io.BytesIO(data), compression="zstd", encrypted=True,
                            identities=[other_identity])  # fmt: skip
        try:
            yield stored
        finally:
            stored.close()

    stored = StoredArchive("backup_x", open_pass, hashlib.sha256(data).hexdigest(), lambda: None)
    staged = _staged(tmp_path)
    with pytest.raises(ArchiveRefused, match="failed validation"):
        stage(staged, stored, no_progress, no_guard)
    staged.discard(None)
    assert sorted(os.listdir(tmp_path / "vol")) == ["_data"]


def test_an_encrypted_archive_is_staged_with_its_key(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    data, root = _archive(tmp_path, recipient)

    @contextmanager
    def open_pass() -> Iterator[StoredPass]:
        stored = StoredPass(io.BytesIO(data), compression="zstd", encrypted=True,
                            identities=[identity])  # fmt: skip
        try:
            yield stored
        finally:
            stored.close()

    stored = StoredArchive("backup_x", open_pass, hashlib.sha256(data).hexdigest(), lambda: None)
    staged = _staged(tmp_path)
    stage(staged, stored, no_progress, no_guard)
    assert snapshot(staged.stages["files"]) == snapshot(root)


class _Stat:
    def __init__(self, free: int) -> None:
        self.f_bavail, self.f_frsize = free // 4096, 4096


def test_free_space_rule(tmp_path: Path) -> None:
    data_dirs = {"a": tmp_path / "a" / "_data", "b": tmp_path / "b" / "_data"}
    for path in data_dirs.values():
        path.mkdir(parents=True)
    sizes = {"a": {"files": 10, "bytes": 100 << 20}, "b": {"files": 0, "bytes": 50 << 20}}
    room = (150 << 20) + 10 * 4096 + HEADROOM_BYTES

    def statvfs(free: int) -> Any:
        return lambda _path: _Stat(free)

    assert why_not_while_running(data_dirs, sizes, statvfs(room + 4096)) is None
    # Both volumes are on one filesystem: their copies add up.
    why = why_not_while_running(data_dirs, sizes, statvfs(room - 4096 * 2))
    assert why is not None and "volumes a, b need" in why
    why = why_not_while_running(data_dirs, {"a": sizes["a"]}, statvfs(room))
    assert why == "the size of volume b is not recorded in the snapshot"
    assert why_not_while_running(data_dirs, [], statvfs(room)) is not None  # an old row's list
