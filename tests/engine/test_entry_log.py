"""Spilled manifests: the backup path keeps finished entries on disk, not in
memory, and must write exactly the manifest the in-memory path writes."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from engine.archive.entry_log import EntryLog
from engine.archive.layout import MANIFEST_JSON
from engine.archive.manifest import Manifest, ManifestEntry
from engine.archive.writer import ArchiveWriter
from tests.engine.treegen import make_tree


def _archive(tree: Path, spill_dir: Path | None) -> tuple[bytes, ArchiveWriter]:
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"), spill_dir=spill_dir)
    writer.add_backup_json({"app_id": "wp"})
    writer.add_volume("v", tree)
    writer.close()
    return out.getvalue(), writer


def _manifest_of(raw: bytes) -> dict:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.extractfile(MANIFEST_JSON)
        assert member is not None
        return json.loads(member.read())


def _without_times(manifest: dict) -> list[dict]:
    # backup.json gets the time it was written: the only entry allowed to differ.
    return [e for e in manifest["entries"] if e["path"] != "backup.json"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "volume"
    make_tree(root)
    # Enough files that entries retire in many rounds while the pipe works.
    many = root / "many"
    many.mkdir()
    for i in range(3000):
        (many / f"f{i}").write_bytes(os.urandom(i % 700))
    (root / "big.bin").write_bytes(os.urandom(9 * 1024 * 1024))  # several pipe chunks
    return root


def test_spilled_manifest_equals_the_in_memory_one(tree: Path, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    in_memory, _ = _archive(tree, None)
    spilled, writer = _archive(tree, spill)
    expected, got = _manifest_of(in_memory), _manifest_of(spilled)
    assert _without_times(got) == _without_times(expected)
    assert len(got["entries"]) > 3000
    assert all(e["sha256"] for e in got["entries"] if e["type"] == "file")
    # The entries went to disk, not into the Manifest object.
    assert writer.manifest.entries == []
    assert writer.summary.volumes["v"]["files"] == sum(
        1 for e in got["entries"] if e["type"] == "file" and e["path"].startswith("volumes/v/")
    )
    assert list(spill.iterdir()) == []  # the spill file was anonymous and is gone


def test_spilled_digests_match_the_content(tree: Path, tmp_path: Path) -> None:
    import hashlib

    raw, _ = _archive(tree, tmp_path)
    listed = {e["path"]: e for e in _manifest_of(raw)["entries"]}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar:
            if member.isfile() and member.name != MANIFEST_JSON:
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                assert listed[member.name]["sha256"] == hashlib.sha256(data).hexdigest()


def test_entries_wait_for_their_digest(tmp_path: Path) -> None:
    manifest = Manifest(backup_id="b")
    log = EntryLog(manifest, spill_dir=tmp_path)

    class FakeDigest:  # the hashing itself is not what this test is about
        def hexdigest(self) -> str:
            return "ab" * 32

    entry = ManifestEntry("volumes/v/f", "file", 3, 0o644, 0, 0, 1)
    log.add(entry, FakeDigest(), ready_after=2)
    log.retire(completed=1)
    assert entry.sha256 is None  # the pipe has not hashed its bytes yet
    with pytest.raises(RuntimeError):
        log.manifest_json()
    log.retire(completed=2)
    size, pieces = log.manifest_json()
    raw = b"".join(pieces)
    assert len(raw) == size
    assert Manifest.from_bytes(raw).entries[0].sha256 == "ab" * 32
    log.close()


def test_empty_spilled_manifest_is_valid_json(tmp_path: Path) -> None:
    log = EntryLog(Manifest(backup_id="b"), spill_dir=tmp_path)
    size, pieces = log.manifest_json()
    raw = b"".join(pieces)
    assert len(raw) == size
    assert Manifest.from_bytes(raw).entries == []
    log.close()
