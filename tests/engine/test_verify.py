"""Verification without restore, on archives written to real local storage."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from engine.age import AgeWriter, generate_identity
from engine.archive.layout import archive_suffix
from engine.archive.manifest import Manifest
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor
from engine.hashing import HashingWriter, sidecar_text
from engine.progress import Progress
from engine.verify import verify_backup
from storage.local import LocalStorage

KEY = "wp/backup_20260105_103000_3fa2c1.tar.zst"
GOOD_SQL = (
    "-- MariaDB dump 10.19\nCREATE TABLE t (x INT);\n-- Dump completed on 2026-01-05 10:30:00\n"
)


def _store(tmp_path: Path, dump_text: str) -> tuple[LocalStorage, str]:
    storage = LocalStorage(tmp_path / "store")
    dump = tmp_path / "wordpress.sql"
    dump.write_text(dump_text)
    entry = {
        "container": "wp-db-1", "engine": "mariadb", "server_version": "10.11",
        "database": "wordpress", "format": "sql", "size": dump.stat().st_size,
        "sha256": hashlib.sha256(dump.read_bytes()).hexdigest(),
        "archive_name": "databases/wp-db-1/wordpress.sql",
    }  # fmt: skip
    with storage.open_writer(KEY) as sink:
        hasher = HashingWriter(sink)
        compressor = open_compressor(hasher, "zstd")
        writer = ArchiveWriter(compressor, Manifest(backup_id="b"))
        writer.add_backup_json({"app_id": "wp", "databases": [entry], "volumes": []})
        writer.add_file(entry["archive_name"], dump)
        writer.close()
        compressor.close()
        sink.commit()
    with storage.open_writer(KEY + ".sha256") as sidecar:
        sidecar.write(sidecar_text(hasher.hexdigest(), KEY.split("/")[1]).encode())
        sidecar.commit()
    return storage, hasher.hexdigest()


def test_deep_verification_checks_each_dump_and_counts_databases(tmp_path: Path) -> None:
    storage, sha = _store(tmp_path, GOOD_SQL)
    result = verify_backup(storage, KEY, sha, deep=True)
    assert result.valid, result.errors
    assert result.contents["database_count"] == 1
    assert [c["ok"] for c in result.contents["database_checks"]] == [True]


def test_a_dump_truncated_by_its_tool_fails_deep_but_not_quick(tmp_path: Path) -> None:
    """The archive is intact (checksums match) but the dump inside lacks the
    MySQL trailer: only the deep check can see it."""
    storage, sha = _store(tmp_path, GOOD_SQL.rsplit("--", 1)[0])
    assert verify_backup(storage, KEY, sha).valid
    deep = verify_backup(storage, KEY, sha, deep=True)
    assert not deep.valid and deep.checksum_match
    assert any("wordpress.sql" in e or "Dump completed" in e for e in deep.errors), deep.errors


@pytest.mark.parametrize("deep", [False, True])
def test_sidecar_mismatch_and_missing_archive_are_reported(tmp_path: Path, deep: bool) -> None:
    storage, sha = _store(tmp_path, GOOD_SQL)
    with storage.open_writer(KEY + ".sha256") as sidecar:
        sidecar.write(sidecar_text("0" * 64, "x").encode())
        sidecar.commit()
    result = verify_backup(storage, KEY, sha, deep=deep)
    assert result.checksum_match and result.sidecar_match is False and not result.valid
    missing = verify_backup(storage, "wp/none.tar.zst", sha, deep=deep)
    assert not missing.valid and "missing" in missing.errors[0]


def _store_archive(
    tmp_path: Path, key: str, compression: str = "zstd", recipient: str | None = None
) -> tuple[LocalStorage, str]:
    """A small volume archive, optionally age-encrypted, with its sidecar."""
    storage = LocalStorage(tmp_path / "store")
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "big.bin").write_bytes(os.urandom(3 << 20))  # several read-ahead chunks
    for i in range(50):
        (volume / f"small-{i}.txt").write_text(f"file {i}\n" * i)
    with storage.open_writer(key) as sink:
        hasher = HashingWriter(sink)
        encryptor = AgeWriter(hasher, recipients=[recipient]) if recipient else None
        compressor = open_compressor(encryptor or hasher, compression)  # type: ignore[arg-type]
        writer = ArchiveWriter(compressor, Manifest(backup_id="b"))
        writer.add_backup_json({"app_id": "wp", "databases": [], "volumes": ["v"]})
        writer.add_volume("v", volume)
        writer.close()
        compressor.close()
        if encryptor is not None:
            encryptor.close()
        sink.commit()
    with storage.open_writer(key + ".sha256") as sidecar:
        sidecar.write(sidecar_text(hasher.hexdigest(), key.split("/")[1]).encode())
        sidecar.commit()
    return storage, hasher.hexdigest()


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_deep_verification_of_each_compression(tmp_path: Path, compression: str) -> None:
    key = "wp/b" + archive_suffix(compression, False)
    storage, sha = _store_archive(tmp_path, key, compression)
    result = verify_backup(storage, key, sha, deep=True, compression=compression)  # type: ignore[arg-type]
    assert result.valid, result.errors
    assert result.contents["file_count"] == 51 and result.contents["volumes"]["v"]["files"] == 51
    assert result.size_bytes == (tmp_path / "store" / key).stat().st_size


def test_deep_verification_of_an_encrypted_archive(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    key = "wp/b.tar.zst.age"
    storage, sha = _store_archive(tmp_path, key, recipient=recipient)
    result = verify_backup(storage, key, sha, deep=True, encrypted=True, identities=[identity])
    assert result.valid, result.errors
    assert result.contents["file_count"] == 51
    other, _ = generate_identity()
    wrong = verify_backup(storage, key, sha, deep=True, encrypted=True, identities=[other])
    assert not wrong.valid and wrong.checksum_match and wrong.sidecar_match
    assert len(wrong.errors) == 1 and "identit" in wrong.errors[0], wrong.errors


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_flipped_stored_byte_is_reported_not_raised(tmp_path: Path, encrypted: bool) -> None:
    identity, recipient = generate_identity()
    key = "wp/b.tar.zst" + (".age" if encrypted else "")
    storage, sha = _store_archive(tmp_path, key, recipient=recipient if encrypted else None)
    path = tmp_path / "store" / key
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    result = verify_backup(storage, key, sha, deep=True, encrypted=encrypted, identities=[identity])
    assert not result.valid and not result.checksum_match and result.sidecar_match is False
    assert result.errors[0] == "SHA-256 of the stored file does not match the snapshot record"
    assert len(result.errors) >= 3  # and the deep scan found the damage too
    assert result.size_bytes == len(raw)


@pytest.mark.parametrize("deep", [False, True])
def test_progress_is_reported_on_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deep: bool
) -> None:
    """Progress callbacks write to the database, whose connections belong to
    a thread: the read-ahead threads never call them."""
    monkeypatch.setattr("engine.verify.PROGRESS_EVERY", 1 << 20)
    monkeypatch.setattr("engine.archive.reader.PROGRESS_SECONDS", 0.0)
    storage, sha = _store_archive(tmp_path, "wp/b.tar.zst", "none")
    seen: list[tuple[int, Progress]] = []
    result = verify_backup(
        storage, "wp/b.tar.zst", sha, deep=deep, compression="none",
        progress=lambda p: seen.append((threading.get_ident(), p)),
    )  # fmt: skip
    assert result.valid, result.errors
    assert len(seen) > 2 and {ident for ident, _ in seen} == {threading.get_ident()}
    assert seen[-1][1] == Progress("verified", result.size_bytes, result.size_bytes)


def test_an_uncompressed_archive_read_in_small_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a decompressor the tar reader reads the stored-file reader
    directly, whose pieces are then views of its chunks, not bytes."""
    monkeypatch.setattr("engine.archive.reader.READ_CHUNK", 100_000)
    storage, sha = _store_archive(tmp_path, "wp/b.tar", "none")
    result = verify_backup(storage, "wp/b.tar", sha, deep=True, compression="none")
    assert result.valid, result.errors
