"""Which engines a drill restores. MongoDB is skipped, saying why: no
MongoDB server image can run here (no registry), so a sandbox restore of a
real mongodump archive could never be tested (see tests/engine/test_dumps_mongo.py
for what is tested of MongoDB dumps without a server)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from engine.drill.deadline import Deadline
from engine.drill.run import NOT_DRILLED, DatabaseResult, drill_databases

ENTRY = {"container": "shop-mongo-1", "engine": "mongo", "server_version": "7.0",
         "database": None, "format": "mongo_archive", "size": 10, "sha256": "0" * 64,
         "archive_name": "databases/shop-mongo-1.archive.gz"}  # fmt: skip


@pytest.mark.docker
def test_a_mongodb_dump_is_skipped_saying_why_and_no_sandbox_is_made(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    dump = tmp_path / "dump"
    dump.write_bytes(b"0123456789")
    entries = [ENTRY]  # mongodump: the whole server in one archive, no database named
    results = drill_databases(
        docker_client, "test-mongo-skip", entries,
        {e["archive_name"]: dump for e in entries}, lambda _c, _g: ("sha256:any", "test"),
        deadline=Deadline(60),
    )  # fmt: skip
    assert [(r.database, r.skipped, r.ok, r.reason) for r in results] == [
        (None, True, True, NOT_DRILLED["mongo"])
    ]
    assert "could not be tested without a MongoDB server image" in results[0].reason
    assert (
        docker_client.containers.list(all=True, filters={"label": "backup-drill=test-mongo-skip"})
        == []
    )


def test_a_snapshot_with_only_a_mongodb_dump_is_skipped_not_passed() -> None:
    from drills.services.run import _judge

    skipped = DatabaseResult("shop-mongo-1", "mongo", None, ok=True, skipped=True,
                             reason=NOT_DRILLED["mongo"])  # fmt: skip
    assert _judge([skipped]) == ("skipped", NOT_DRILLED["mongo"])
    passed = DatabaseResult("shop-db-1", "postgres", "shop", ok=True)
    assert _judge([passed, skipped]) == ("passed", NOT_DRILLED["mongo"])  # said beside the pass
