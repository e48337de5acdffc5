"""Extracting a chain (engine.restore.chain): from every point of a chain
the staging tree equals the volume as it was then, with full metadata; a
chain whose links are not right is refused before anything is extracted;
a damaged older archive fails the extraction."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.errors import ArchiveError
from engine.restore.chain import ChainLinkRecord, check_links, extract_chain
from engine.restore.plan import read_backup_json
from engine.restore.staging import StoredArchive
from engine.restore.stream import StoredPass
from tests.engine.chaingen import FULL, INCR, INCR2, VOLUME, backup, mutate, opener, sha256_of
from tests.engine.treegen import make_tree, snapshot

INCR3 = "backup_20260105_130000_dddddd"
KINDS = {FULL: "full", INCR: "incremental", INCR2: "incremental", INCR3: "incremental"}


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """Archives FULL..INCR3 of one volume, changed in between; and the
    volume's state (treegen.snapshot) at each."""
    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    states = {}
    backup(src, out_dir, index_dir, FULL)
    states[FULL] = snapshot(src)
    mutate(src)
    backup(src, out_dir, index_dir, INCR, FULL)
    states[INCR] = snapshot(src)
    # Back again: the file that became a directory is a file, renamed back, deleted dirs.
    shutil.rmtree(src / ("x" * 200))
    (src / ("x" * 200)).write_text("a file again")
    os.rename(src / "renamed", src / "-dash")
    shutil.rmtree(src / "content")
    (src / "shared" / "added.txt").write_text("added in incr2")
    os.chmod(src / "shared", 0o750)
    backup(src, out_dir, index_dir, INCR2, INCR)
    states[INCR2] = snapshot(src)
    with open(src / "run.sh", "a") as handle:
        handle.write("echo again\n")
    backup(src, out_dir, index_dir, INCR3, INCR2)
    states[INCR3] = snapshot(src)
    return out_dir, states


def _stored(out_dir: Path, backup_id: str, sha256: str | None = None) -> StoredArchive:
    """The archive as the restore service gives it: read once, its stored bytes hashed."""
    path = out_dir / f"{backup_id}.tar.zst"

    @contextmanager
    def open_pass() -> Iterator[StoredPass]:
        with open(path, "rb") as raw:
            stored = StoredPass(raw, compression="zstd", encrypted=False)
            try:
                yield stored
            finally:
                stored.close()

    return StoredArchive(backup_id, open_pass, sha256 or sha256_of(path), lambda: None)


def _records(out_dir: Path, ids: list[str]) -> list[ChainLinkRecord]:
    return [ChainLinkRecord(b, sha256_of(out_dir / f"{b}.tar.zst"), KINDS[b]) for b in ids]


def _extract(out_dir: Path, ids: list[str], dest: Path) -> Path:
    """Chain IDS (newest first), checked, then extracted into DEST/staging."""
    opens = [opener(out_dir / f"{b}.tar.zst") for b in ids]
    backups = [read_backup_json(open_tar) for open_tar in opens]
    check_links(_records(out_dir, ids), backups)
    staging = dest / "staging"
    staging.mkdir(parents=True)
    extract_chain([_stored(out_dir, b) for b in ids], backups, {VOLUME: staging})
    return staging


@pytest.mark.parametrize("point", [FULL, INCR, INCR2, INCR3])
def test_every_point_of_the_chain_comes_back_exactly(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path, point: str
) -> None:
    out_dir, states = chain
    ids = [FULL, INCR, INCR2, INCR3][: [FULL, INCR, INCR2, INCR3].index(point) + 1][::-1]
    staging = _extract(out_dir, ids, tmp_path / "r")
    assert snapshot(staging) == states[point]
    # The volume root and its directories got their metadata back too.
    assert oct(os.stat(staging / "shared").st_mode & 0o7777) == oct(states[point]["shared"][1])


def test_links_that_are_not_right_are_refused(chain: tuple[Path, dict[str, dict]]) -> None:
    out_dir, _ = chain
    opens = {b: opener(out_dir / f"{b}.tar.zst") for b in KINDS}
    backups = {b: read_backup_json(o) for b, o in opens.items()}
    # A link left out: INCR2's parent is INCR, not FULL.
    with pytest.raises(ArchiveError, match="as its parent"):
        check_links(_records(out_dir, [INCR2, FULL]), [backups[INCR2], backups[FULL]])
    # The parent's archive is not the one the child was made on.
    records = _records(out_dir, [INCR, FULL])
    records[1] = ChainLinkRecord(FULL, "0" * 64, "full")
    with pytest.raises(ArchiveError, match="SHA-256 differs"):
        check_links(records, [backups[INCR], backups[FULL]])
    # An archive under another snapshot's name.
    with pytest.raises(ArchiveError, match="holds"):
        check_links(_records(out_dir, [INCR, FULL]), [backups[INCR2], backups[FULL]])
    # No full at the end.
    with pytest.raises(ArchiveError, match="does not end with a full"):
        check_links(_records(out_dir, [INCR2, INCR]), [backups[INCR2], backups[INCR]])


def test_a_damaged_older_archive_fails_the_extraction(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path
) -> None:
    """Its links (recorded before the damage) still check out: the
    extraction refuses it, by the stored bytes' SHA-256 if not before."""
    out_dir, _ = chain
    ids = [INCR, FULL]
    records = _records(out_dir, ids)
    path = out_dir / f"{FULL}.tar.zst"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    opens = [opener(out_dir / f"{b}.tar.zst") for b in ids]
    backups = [read_backup_json(open_tar) for open_tar in opens]
    check_links(records, backups)
    staging = tmp_path / "staging"
    staging.mkdir()
    stored = [_stored(out_dir, b, r.sha256) for b, r in zip(ids, records, strict=True)]
    with pytest.raises(ArchiveError, match=f"backup {FULL}: SHA-256 of the stored file"):
        extract_chain(stored, backups, {VOLUME: staging})
