"""Block deltas of large files changed in place (engine.incremental.delta):
a chain of a volume whose large files get page rewrites, an append, a
truncation, and a file growing past the threshold; from every point the
chain restore (engine.restore.chain) and the by-hand procedure of the
README (tar, zstd, and the archive's own apply_deltas.py) give that point's
tree exactly; deltas are small; a damaged delta refuses the restore; deep
verification accepts the archives."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.archive.reader import scan_archive
from engine.compression import open_compressor, open_decompressor
from engine.errors import ArchiveError
from engine.incremental.delta import BLOCK_SIZE, DELTA_MIN_SIZE
from engine.incremental.index import index_path, read_index
from engine.incremental.rebuild import rebuild_index
from engine.restore.chain import extract_chain
from engine.restore.extract import extract_volumes
from engine.restore.plan import read_backup_json
from tests.engine.chaingen import (
    BY_HAND,
    DELETED,
    FULL,
    INCR,
    INCR2,
    VOLUME,
    backup,
    opener,
    tar_x,
)  # fmt: skip
from tests.engine.test_chain_restore import INCR3, _extract, _stored
from tests.engine.treegen import snapshot

IDS = [FULL, INCR, INCR2, INCR3]
MIB = 1024 * 1024


def _rewrite_pages(path: Path, pages: int, seed: int) -> None:
    """PAGES random 16 KiB pages of PATH rewritten in place (as InnoDB does)."""
    rng = random.Random(seed)
    count = path.stat().st_size // BLOCK_SIZE
    with open(path, "r+b") as handle:
        for page in rng.sample(range(count), pages):
            handle.seek(page * BLOCK_SIZE)
            handle.write(rng.randbytes(BLOCK_SIZE))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """The archives (OUT_DIR; the index beside it) and the states. Module-wide:
    the tests only read them."""
    root = tmp_path_factory.mktemp("deltas")
    src, out_dir, index_dir = root / "volume", root / "out", root / "index"
    (src / "db").mkdir(parents=True)
    out_dir.mkdir()
    rng = random.Random(1)
    (src / "db" / "ibdata1").write_bytes(rng.randbytes(8 * MIB))
    (src / "db" / "table.ibd").write_bytes(rng.randbytes(3 * MIB + 1000))  # a partial last block
    (src / "app.log").write_bytes(rng.randbytes(2 * MIB + 5))
    (src / "growing.bin").write_bytes(rng.randbytes(MIB // 2))
    (src / "small.txt").write_text("small")
    os.chmod(src / "db" / "table.ibd", 0o640)
    states = {}
    backup(src, out_dir, index_dir, FULL)
    states[FULL] = snapshot(src)
    # INCR: page rewrites, an append, a file growing past the threshold.
    _rewrite_pages(src / "db" / "ibdata1", 10, 2)
    _rewrite_pages(src / "db" / "table.ibd", 3, 3)
    with open(src / "app.log", "ab") as handle:
        handle.write(rng.randbytes(70_000))
    with open(src / "growing.bin", "ab") as handle:
        handle.write(rng.randbytes(MIB))
    backup(src, out_dir, index_dir, INCR, FULL)
    states[INCR] = snapshot(src)
    # INCR2: a truncation, more rewrites and a mode change, the grown file changed in place.
    with open(src / "app.log", "r+b") as handle:
        handle.truncate(MIB + 3 * BLOCK_SIZE + 7)
    _rewrite_pages(src / "db" / "ibdata1", 5, 4)
    os.chmod(src / "db" / "ibdata1", 0o600)
    _rewrite_pages(src / "growing.bin", 1, 5)
    backup(src, out_dir, index_dir, INCR2, INCR)
    states[INCR2] = snapshot(src)
    # INCR3: the table only (the others carried over from earlier archives).
    _rewrite_pages(src / "db" / "table.ibd", 2, 6)
    backup(src, out_dir, index_dir, INCR3, INCR2)
    states[INCR3] = snapshot(src)
    return out_dir, states


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with (
        open(archive, "rb") as raw,
        tarfile.open(fileobj=io.BytesIO(open_decompressor(raw, "zstd").read()), mode="r:") as tar,
    ):
        return {member.name: member for member in tar.getmembers()}


def test_changed_in_place_files_are_stored_as_small_deltas(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path
) -> None:
    out_dir, _ = chain
    members = _members(out_dir / f"{INCR}.tar.zst")
    deltas = {name: m.size for name, m in members.items() if name.startswith("deltas/")}
    assert set(deltas) == {
        f"deltas/{VOLUME}/db/ibdata1", f"deltas/{VOLUME}/db/table.ibd", f"deltas/{VOLUME}/app.log",
    }  # fmt: skip
    # Each rewritten page costs its 16 KiB and 8 bytes; an append, the tail and the last block.
    assert deltas[f"deltas/{VOLUME}/db/ibdata1"] <= 104 + 10 * (BLOCK_SIZE + 8)
    assert deltas[f"deltas/{VOLUME}/app.log"] <= 104 + 70_005 + 2 * (BLOCK_SIZE + 8)
    assert f"volumes/{VOLUME}/db/ibdata1" not in members
    # growing.bin had no block digests (under the threshold in the full): written whole.
    assert members[f"volumes/{VOLUME}/growing.bin"].size == MIB // 2 + MIB
    assert "apply_deltas.py" in members and "apply_deltas.py" not in _members(
        out_dir / f"{FULL}.tar.zst"
    )
    with (
        open(out_dir / f"{INCR}.tar.zst", "rb") as raw,
        tarfile.open(fileobj=io.BytesIO(open_decompressor(raw, "zstd").read()), mode="r:") as tar,
    ):
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    entry = next(e for e in manifest["entries"] if e["path"] == f"volumes/{VOLUME}/db/ibdata1")
    assert entry["type"] == "delta" and entry["size"] == 8 * MIB and len(entry["sha256"]) == 64
    # The worker-side index keeps the block digests (and says "file").
    _, lines = read_index(index_path(out_dir.parent / "index", "wp", INCR), INCR)
    line = next(x for x in lines if x["path"] == f"volumes/{VOLUME}/db/ibdata1")
    assert line["type"] == "file" and line["block_size"] == BLOCK_SIZE and line["blocks"]
    # The truncated log in INCR2 and the grown file are deltas there.
    later = _members(out_dir / f"{INCR2}.tar.zst")
    assert later[f"deltas/{VOLUME}/app.log"].size <= 104 + 2 * (BLOCK_SIZE + 8)
    assert later[f"deltas/{VOLUME}/growing.bin"].size <= 104 + BLOCK_SIZE + 8
    assert DELTA_MIN_SIZE < MIB + MIB // 2


@pytest.mark.parametrize("point", IDS)
def test_every_point_comes_back_exactly(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path, point: str
) -> None:
    out_dir, states = chain
    ids = IDS[: IDS.index(point) + 1][::-1]
    staging = _extract(out_dir, ids, tmp_path / "r")
    assert snapshot(staging) == states[point]
    assert not list((tmp_path / "r").glob(".chain-deltas-*"))


@pytest.mark.parametrize("point", [INCR2, INCR3])
def test_by_hand_with_tar_zstd_and_the_shipped_script(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path, point: str
) -> None:
    """The README's procedure, literally: for each archive in chain order,
    remove its deleted paths, tar -x it, run its apply_deltas.py."""
    out_dir, states = chain
    dest = tmp_path / "by-hand"
    dest.mkdir()
    archives = " ".join(str(out_dir / f"{b}.tar.zst") for b in IDS[: IDS.index(point) + 1])
    script = BY_HAND.format(archives=archives, dest=dest, deleted=DELETED)
    assert "apply_deltas.py" in script
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True, capture_output=True)
    assert snapshot(dest / "volumes" / VOLUME) == states[point]
    assert not (dest / "deltas").exists()


def _damage_delta(archive: Path, out: Path) -> None:
    """ARCHIVE with one byte of its ibdata1 delta flipped, its manifest
    entry for the delta member recomputed: the member checks pass, the
    patched file's SHA-256 does not."""
    with open(archive, "rb") as raw:
        data = open_decompressor(raw, "zstd").read()
    name = f"deltas/{VOLUME}/db/ibdata1"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]  # type: ignore[union-attr]
    fixed = []
    for member, body in members:
        if member.name == name and body is not None:
            body = body[:200] + bytes([body[200] ^ 1]) + body[201:]
            digest = hashlib.sha256(body).hexdigest()
        if member.name == "manifest.json" and body is not None:
            manifest = json.loads(body)
            for entry in manifest["entries"]:
                if entry["path"] == name:
                    entry["sha256"] = digest
            body = json.dumps(manifest).encode()
            member.size = len(body)
        fixed.append((member, body))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for member, body in fixed:
            tar.addfile(member, io.BytesIO(body) if body is not None else None)
    with open(out, "wb") as raw:
        compressor = open_compressor(raw, "zstd")
        compressor.write(buffer.getvalue())
        compressor.close()


def test_a_damaged_delta_refuses_the_restore(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path
) -> None:
    out_dir, _ = chain
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    full = f"{FULL}.tar.zst"
    (damaged / full).write_bytes((out_dir / full).read_bytes())
    _damage_delta(out_dir / f"{INCR}.tar.zst", damaged / f"{INCR}.tar.zst")
    ids = [INCR, FULL]
    backups = [read_backup_json(opener(damaged / f"{b}.tar.zst")) for b in ids]
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(ArchiveError, match=r"ibdata1.*SHA-256"):
        extract_chain([_stored(damaged, b) for b in ids], backups, {VOLUME: staging})


def test_deep_verify_accepts_incrementals_with_deltas(chain: tuple[Path, dict[str, dict]]) -> None:
    out_dir, _ = chain
    held = {FULL: 5, INCR: 4, INCR2: 3, INCR3: 1}  # a delta counts as the file it makes
    for backup_id in IDS:
        with open(out_dir / f"{backup_id}.tar.zst", "rb") as raw:
            report = scan_archive(open_decompressor(raw, "zstd"))
        assert report.valid, (backup_id, report.errors)
        assert report.volumes[VOLUME].files == held[backup_id]


def test_delta_header_is_the_documented_one(chain: tuple[Path, dict[str, dict]]) -> None:
    out_dir, _ = chain
    with (
        open(out_dir / f"{INCR}.tar.zst", "rb") as raw,
        tarfile.open(fileobj=io.BytesIO(open_decompressor(raw, "zstd").read()), mode="r:") as tar,
    ):
        body = tar.extractfile(f"deltas/{VOLUME}/db/ibdata1").read()  # type: ignore[union-attr]
    magic, block, zero, base_size, new_size, count = struct.unpack_from("<8sIIQQQ", body)
    assert (magic, block, zero, base_size, new_size, count) == (
        b"DABDELT1", BLOCK_SIZE, 0, 8 * MIB, 8 * MIB, 10,
    )  # fmt: skip
    assert len(body) == 104 + 10 * (8 + BLOCK_SIZE)


def test_rebuilt_index_has_the_block_digests_of_the_kept_one(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path
) -> None:
    """From whole members and from deltas (base digests, the held blocks replaced)."""
    out_dir, _ = chain

    def lines(directory: Path) -> dict[str, dict]:
        _, entries = read_index(index_path(directory, "wp", INCR3), INCR3)
        return {entry["path"]: entry for entry in entries}

    rebuild_index(
        tmp_path / "rebuilt", "wp", [opener(out_dir / f"{b}.tar.zst") for b in IDS], INCR3
    )
    kept, rebuilt = lines(out_dir.parent / "index"), lines(tmp_path / "rebuilt")
    assert rebuilt == kept
    assert sum(1 for line in kept.values() if "blocks" in line) == 4


def test_a_file_rewritten_all_over_in_place_is_written_whole(tmp_path: Path) -> None:
    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    src.mkdir()
    out_dir.mkdir()
    (src / "rotated.log").write_bytes(random.Random(7).randbytes(2 * MIB))
    backup(src, out_dir, index_dir, FULL)
    with open(src / "rotated.log", "r+b") as handle:  # same inode, every block new
        handle.write(random.Random(8).randbytes(2 * MIB))
    backup(src, out_dir, index_dir, INCR, FULL)
    members = _members(out_dir / f"{INCR}.tar.zst")
    assert members[f"volumes/{VOLUME}/rotated.log"].size == 2 * MIB
    assert not [name for name in members if name.startswith("deltas/")]
    staging = _extract(out_dir, [INCR, FULL], tmp_path / "r")
    assert (staging / "rotated.log").read_bytes() == (src / "rotated.log").read_bytes()


def test_an_incremental_with_deltas_is_not_restored_alone(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path
) -> None:
    """Out of its chain (extract_volumes), a delta would leave its file out: refused."""
    out_dir, _ = chain
    staging = tmp_path / "alone"
    staging.mkdir()
    with (
        open(out_dir / f"{INCR}.tar.zst", "rb") as raw,
        pytest.raises(ArchiveError, match="block delta"),
    ):
        extract_volumes(open_decompressor(raw, "zstd"), {VOLUME: staging})


def test_the_script_patches_nothing_when_a_base_is_not_the_right_one(
    chain: tuple[Path, dict[str, dict]], tmp_path: Path
) -> None:
    out_dir, states = chain
    dest = tmp_path / "by-hand"
    dest.mkdir()
    tar_x(out_dir / f"{FULL}.tar.zst", dest)
    root = dest / "volumes" / VOLUME
    with open(root / "db" / "ibdata1", "r+b") as handle:  # not the version INCR was made on
        handle.write(b"x")
    table = (root / "db" / "table.ibd").read_bytes()
    tar_x(out_dir / f"{INCR}.tar.zst", dest)
    done = subprocess.run(["python3", str(dest / "apply_deltas.py"), str(dest)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and "is not the version" in done.stderr
    assert (root / "db" / "table.ibd").read_bytes() == table  # checked before any patch
    assert (dest / "deltas").exists()
    assert states[FULL]["db/table.ibd"][6] == table


def test_a_delta_on_another_base_refuses_the_chain_restore(tmp_path: Path) -> None:
    """An incremental whose full is swapped for another full of a file of the
    same size (check_links skipped: it would refuse the swap first). The
    base is checked by the SHA-256 the extractor computed while writing the
    full's version, not by reading it again: this message is that check's."""
    src, other = tmp_path / "volume", tmp_path / "other"
    out_dir, other_out, index_dir = tmp_path / "out", tmp_path / "other-out", tmp_path / "index"
    for directory in (src, other, out_dir, other_out):
        directory.mkdir()
    data = random.Random(9).randbytes(2 * MIB)
    (src / "ibdata1").write_bytes(data)
    (other / "ibdata1").write_bytes(b"x" + data[1:])
    backup(src, out_dir, index_dir, FULL)
    backup(other, other_out, tmp_path / "other-index", FULL)
    _rewrite_pages(src / "ibdata1", 2, 10)
    backup(src, out_dir, index_dir, INCR, FULL)
    assert f"deltas/{VOLUME}/ibdata1" in _members(out_dir / f"{INCR}.tar.zst")
    stored = [_stored(out_dir, INCR), _stored(other_out, FULL)]
    backups = [read_backup_json(opener(out_dir / f"{INCR}.tar.zst")),
               read_backup_json(opener(other_out / f"{FULL}.tar.zst"))]  # fmt: skip
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(ArchiveError, match=r"ibdata1.*not the version its first delta"):
        extract_chain(stored, backups, {VOLUME: staging})
