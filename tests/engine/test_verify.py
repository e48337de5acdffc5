"""Verification without restore, on archives written to real local storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.archive.manifest import Manifest
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor
from engine.hashing import HashingWriter, sidecar_text
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
