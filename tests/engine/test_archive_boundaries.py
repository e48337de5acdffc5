"""Members whose data ends on a block, batch or chunk boundary (issue 10).

A manifest entry is final once the writer thread has finished the pipe item
holding the entry's last bytes. When those bytes closed an item (a large
file's last chunk with no padding after it, or a batch flushed on reaching
BATCH_SIZE) and the member was the last one, the writer waited for an item
that never came and close() failed with "manifest entries still waiting for
their digests": a 4 MiB SQLite database archived last broke the backup.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.archive.layout import MANIFEST_JSON
from engine.archive.manifest import Manifest
from engine.archive.tar_headers import RECORD
from engine.archive.writer import BATCH_SIZE, CHUNK_SIZE, ArchiveWriter
from engine.compression import open_compressor

MIB = 1024 * 1024
assert BATCH_SIZE == MIB and CHUNK_SIZE == 4 * MIB  # the sizes below are chosen around these

SIZES = [
    0, 1, 511, 512, 513, 4096,
    MIB - 512, MIB - 1, MIB, MIB + 1, MIB + 512,
    3 * MIB + 1536,
    4 * MIB - 512, 4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 4 * MIB + 512,
    8 * MIB,
]  # fmt: skip
WHOLE_SECOND = 1_700_000_000 * 1_000_000_000  # no sub-second mtime: 512-byte headers


def _content(size: int, seed: int = 0) -> bytes:
    return random.Random(size * 7919 + seed).randbytes(size)


def _members(raw: bytes) -> dict[str, bytes | None]:
    """Member name → data (None for non-files), read with Python's tarfile."""
    found: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            found[member.name.rstrip("/")] = handle.read() if handle else None
    return found


def _manifest(members: dict[str, bytes | None]) -> dict[str, dict]:
    raw = members[MANIFEST_JSON]
    assert raw is not None
    return {e["path"]: e for e in json.loads(raw)["entries"]}


def _check(raw: bytes) -> tuple[dict[str, bytes | None], dict[str, dict]]:
    """The tar is whole, and every member is in the manifest with its SHA-256."""
    assert len(raw) % RECORD == 0
    members = _members(raw)
    assert list(members)[-1] == MANIFEST_JSON
    listed = _manifest(members)
    assert set(listed) == set(members) - {MANIFEST_JSON}
    for name, data in members.items():
        if data is not None and name != MANIFEST_JSON:
            assert listed[name]["size"] == len(data)
            assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest(), name
    return members, listed


# -- one member of each boundary size, last or not ---------------------------


@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "spill"])
@pytest.mark.parametrize("last", [True, False], ids=["last", "not-last"])
@pytest.mark.parametrize("how", ["volume", "add_file", "add_bytes"])
@pytest.mark.parametrize("size", SIZES)
def test_member_of_boundary_size(
    size: int, how: str, last: bool, spill: bool, tmp_path: Path
) -> None:
    data = _content(size)
    spill_dir = tmp_path / "spill" if spill else None
    if spill_dir:
        spill_dir.mkdir()
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"), spill_dir=spill_dir)
    writer.add_backup_json({"app_id": "db"})
    if how == "volume":  # a volume holding one database file, as in the issue
        volume = tmp_path / "volume"
        volume.mkdir()
        (volume / "app.sqlite").write_bytes(data)
        writer.add_volume("data", volume)
        name = "volumes/data/app.sqlite"
    elif how == "add_file":  # a database dump
        (tmp_path / "dump.sql").write_bytes(data)
        name = "databases/db-1/dump.sql"
        writer.add_file(name, tmp_path / "dump.sql")
    else:
        name = "config/blob"
        writer.add_bytes(name, data)
    if not last:
        writer.add_bytes("config/after.txt", b"after\n")
    writer.close()

    members, listed = _check(out.getvalue())
    assert members[name] == data
    assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest()
    if not last:
        assert members["config/after.txt"] == b"after\n"
    if spill_dir:
        assert list(spill_dir.iterdir()) == []


def test_two_large_block_aligned_files_back_to_back(tmp_path: Path) -> None:
    """Both end on a chunk boundary with no padding: the first one's entry is
    final after its own last chunk, the second one's after the archive's."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "a.ibd").write_bytes(_content(4 * MIB))
    (volume / "b.ibd").write_bytes(_content(2 * MIB, seed=1))
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"), spill_dir=tmp_path)
    writer.add_volume("mysql", volume)
    writer.close()
    members, _ = _check(out.getvalue())
    assert members["volumes/mysql/a.ibd"] == _content(4 * MIB)


# -- a header-only member that tips the batch over BATCH_SIZE ----------------


@pytest.mark.parametrize("kind", ["dir", "symlink", "hardlink", "empty-file"])
@pytest.mark.parametrize("gap_blocks", range(1, 4))
def test_last_member_whose_header_fills_the_batch(
    kind: str, gap_blocks: int, tmp_path: Path
) -> None:
    """A filler leaves the batch a few blocks short of BATCH_SIZE; the last
    member's header then reaches it, the batch goes out, and the entry is
    recorded with nothing left in the batch."""
    volume = tmp_path / "volume"
    volume.mkdir()
    # Root dir header, filler header, filler data: BATCH_SIZE - gap_blocks blocks.
    filler = volume / "a-filler"
    filler.write_bytes(_content(BATCH_SIZE - 512 * (2 + gap_blocks)))
    last = volume / "z-last"
    if kind == "dir":
        last.mkdir()
    elif kind == "symlink":
        os.symlink("a-filler", last)
    elif kind == "hardlink":
        os.link(filler, last)
    else:
        last.touch()
    for path in (last, filler, volume):
        os.utime(path, ns=(WHOLE_SECOND, WHOLE_SECOND), follow_symlinks=False)
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"))
    writer.add_volume("v", volume)
    writer.close()
    _, listed = _check(out.getvalue())
    assert "volumes/v/z-last" in listed


# -- any sequence of members: GNU tar extracts it, the manifest is right -----

_BOUNDARY = st.sampled_from(SIZES)
_SIZE = st.one_of(_BOUNDARY, st.integers(0, 4096), st.integers(0, 2 * BATCH_SIZE))
_MEMBER = st.one_of(
    st.tuples(st.just("file"), _SIZE),
    st.tuples(st.just("sparse"), _SIZE),
    st.tuples(st.just("dir"), st.just(0)),
    st.tuples(st.just("symlink"), st.integers(0, 50)),
    st.tuples(st.just("hardlink"), st.integers(0, 50)),
)


def _build(root: Path, specs: list[tuple[str, int]], parents: list[int]) -> None:
    """Member i goes into the directory made by an earlier spec (or the root)."""
    dirs = [root]
    files: list[Path] = []
    for i, ((kind, arg), parent) in enumerate(zip(specs, parents, strict=True)):
        path = dirs[parent % len(dirs)] / f"m{i:03d}"
        if kind == "file":
            path.write_bytes(_content(arg, seed=i))
            files.append(path)
        elif kind == "sparse":  # a hole, then some data, then a hole
            with open(path, "wb") as handle:
                handle.truncate(arg)
                handle.seek(arg // 3)
                handle.write(_content(min(arg - arg // 3, 5000), seed=i))
            files.append(path)
        elif kind == "dir":
            path.mkdir()
            dirs.append(path)
        elif kind == "symlink":
            os.symlink(f"target-{arg}", path)  # dangling is fine: never followed
        elif files:
            os.link(files[arg % len(files)], path)
        else:
            path.write_bytes(b"")


def _walk(root: Path) -> dict[str, tuple[str, object]]:
    """Relative path → (kind, content or link target) of a tree on disk."""
    found: dict[str, tuple[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("symlink", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", None)
            else:
                found[rel] = ("file", path.read_bytes())
    return found


@settings(
    max_examples=40,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.data(),
    specs=st.lists(_MEMBER, min_size=0, max_size=12),
    dump_size=st.one_of(st.none(), _BOUNDARY),
    spill=st.booleans(),
)
def test_any_members_extract_with_gnu_tar_and_match_the_manifest(
    data: st.DataObject, specs: list[tuple[str, int]], dump_size: int | None, spill: bool
) -> None:
    parents = data.draw(st.lists(st.integers(0, 20), min_size=len(specs), max_size=len(specs)))
    with tempfile.TemporaryDirectory(prefix="archive-boundaries-") as tmp:
        base = Path(tmp)
        volume = base / "volume"
        volume.mkdir()
        _build(volume, specs, parents)
        spill_dir = base / "spill" if spill else None
        if spill_dir:
            spill_dir.mkdir()
        archive = base / "a.tar.zst"
        with open(archive, "wb") as raw:
            compressor = open_compressor(raw, "zstd")
            writer = ArchiveWriter(compressor, Manifest(backup_id="b"), spill_dir=spill_dir)
            writer.add_backup_json({"app_id": "prop"})
            writer.add_volume("v", volume)
            dump = base / "dump.sql"
            if dump_size is not None:  # a dump archived last, after the volume
                dump.write_bytes(_content(dump_size, seed=99))
                writer.add_file("databases/db-1/dump.sql", dump)
            writer.close()
            compressor.close()

        dest = base / "restored"
        dest.mkdir()
        subprocess.run(
            f"zstd -dcq {archive} | tar -x --numeric-owner -C {dest}",
            shell=True, check=True, capture_output=True,
        )  # fmt: skip

        expected = _walk(volume)
        assert _walk(dest / "volumes" / "v") == expected
        if dump_size is not None:
            assert (dest / "databases/db-1/dump.sql").read_bytes() == dump.read_bytes()

        listed = {e["path"]: e for e in json.loads((dest / MANIFEST_JSON).read_bytes())["entries"]}
        members = {f"volumes/v/{rel}" for rel in expected} | {"volumes/v", "backup.json"}
        if dump_size is not None:
            members.add("databases/db-1/dump.sql")
        assert set(listed) == members
        for path, entry in listed.items():
            on_disk = dest / path
            if entry["type"] == "file":
                assert entry["sha256"] == hashlib.sha256(on_disk.read_bytes()).hexdigest(), path
            elif entry["type"] == "hardlink":
                first = listed[entry["link_target"]]
                assert first["type"] == "file"
                assert os.stat(dest / entry["link_target"]).st_ino == os.stat(on_disk).st_ino
            elif entry["type"] == "symlink":
                assert os.readlink(on_disk) == entry["link_target"]
