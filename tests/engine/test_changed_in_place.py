"""Files written in place while the backup reads them (issue 19, point 8).

Only a size change used to be noticed: an 800 MB file receiving 4 KiB
pwrites at random offsets during its read came out with
changed_during_read = 0. Like GNU tar ("file changed as we read it"), the
writer now compares the fd's fstat (size, mtime, ctime) before and after
the read, flags the entry, counts and names it in the summary, and the
backup's warnings say so.
"""

from __future__ import annotations

import io
import os
import random
import stat
import threading
from pathlib import Path

import pytest

from engine.archive.entry_log import CHANGED_NAMES_MAX, ArchiveSummary
from engine.archive.manifest import Manifest, ManifestEntry
from engine.archive.reader import scan_archive
from engine.archive.writer import ArchiveWriter
from engine.backup import changed_warnings

MIB = 1024 * 1024
LARGE = 128 * MIB
A_DAY_AGO_NS = 86_400 * 10**9


class _NullSink:
    """The archive's bytes are not the point here: only the manifest is."""

    def write(self, data: bytes) -> int:
        return len(data)


def _fill(path: Path, size: int) -> None:
    block = random.Random(1).randbytes(MIB)
    with open(path, "wb") as handle:
        for _ in range(size // MIB):
            handle.write(block)


def _backdate(path: Path) -> None:
    # An mtime well in the past: a write now moves it whatever the clock's
    # granularity (a write in the same tick as the file's creation would not).
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - A_DAY_AGO_NS))


def test_a_large_file_receiving_pwrites_during_its_read_is_flagged(tmp_path: Path) -> None:
    volume = tmp_path / "v"
    volume.mkdir()
    _fill(volume / "db.img", LARGE)
    _fill(volume / "quiet.img", 8 * MIB)  # the control: nobody writes to it
    for name in ("db.img", "quiet.img"):
        _backdate(volume / name)
    stop = threading.Event()
    started = threading.Event()
    writes = [0]

    def writer_thread() -> None:  # data work only: writes in place, counted
        rng = random.Random(2)
        fd = os.open(volume / "db.img", os.O_WRONLY)
        try:
            while not stop.is_set():
                os.pwrite(fd, rng.randbytes(4096), rng.randrange(0, LARGE - 4096))
                writes[0] += 1
                started.set()
        finally:
            os.close(fd)

    thread = threading.Thread(target=writer_thread, name="in-place-writer", daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        writer = ArchiveWriter(_NullSink(), Manifest(backup_id="b"))
        before = writes[0]
        writer.add_volume("v", volume)
        during = writes[0] - before
        writer.close()
    finally:
        stop.set()
        thread.join()
    assert during > 0  # the writes demonstrably landed while the volume was read
    entries = {e.path: e for e in writer.manifest.entries}
    assert os.stat(volume / "db.img").st_size == LARGE  # in place: the size never moved
    assert entries["volumes/v/db.img"].changed_during_read
    assert not entries["volumes/v/quiet.img"].changed_during_read
    assert writer.summary.changed_during_read == 1
    assert writer.summary.changed_files == ["volumes/v/db.img"]


def _write_in_place_after_open(
    monkeypatch: pytest.MonkeyPatch, victim: Path, offset: int
) -> list[int]:
    """After the writer's fstat of the opened file (the 'before' of the
    comparison), the app writes 4 KiB in place: before the data is read."""
    real_fstat = os.fstat
    done = [0]

    def fstat_then_write(fd: int) -> os.stat_result:
        result = real_fstat(fd)
        if stat.S_ISREG(result.st_mode) and result.st_ino == victim.stat().st_ino and not done[0]:
            done[0] += 1
            out = os.open(victim, os.O_WRONLY)
            try:
                os.pwrite(out, b"\xff" * 4096, offset)
            finally:
                os.close(out)
        return result

    monkeypatch.setattr(os, "fstat", fstat_then_write)
    return done


@pytest.mark.parametrize("size", [64 * 1024, 6 * MIB], ids=["batched", "chunked"])
def test_a_write_in_place_of_the_same_size_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Small files go through the batch, large ones through pooled chunks:
    both paths compare the fstat before and after."""
    volume = tmp_path / "v"
    volume.mkdir()
    victim = volume / "data.bin"
    victim.write_bytes(bytes(range(256)) * (size // 256))
    (volume / "other.bin").write_bytes(b"o" * size)
    for path in (victim, volume / "other.bin"):
        _backdate(path)
    done = _write_in_place_after_open(monkeypatch, victim, offset=size // 2)
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"))
    writer.add_backup_json({"volumes": [{"name": "v"}]})  # restorable: verify checks as restore
    writer.add_volume("v", volume)
    writer.close()
    monkeypatch.undo()
    assert done == [1]
    entries = {e.path: e for e in writer.manifest.entries}
    assert entries["volumes/v/data.bin"].changed_during_read
    assert not entries["volumes/v/other.bin"].changed_during_read
    assert scan_archive(io.BytesIO(out.getvalue())).valid  # still a whole, valid archive
    assert b'"changed_during_read":true' in writer.manifest.to_bytes()


def test_a_quiet_volume_has_nothing_flagged_and_no_warning(tmp_path: Path) -> None:
    volume = tmp_path / "v"
    volume.mkdir()
    for i in range(50):
        (volume / f"f{i}").write_bytes(os.urandom(1000 * i))
    writer = ArchiveWriter(_NullSink(), Manifest(backup_id="b"))
    writer.add_volume("v", volume)
    writer.close()
    assert writer.summary.changed_during_read == 0 and writer.summary.changed_files == []
    assert not any(e.changed_during_read for e in writer.manifest.entries)
    assert changed_warnings(writer.summary) == []


def test_the_warning_counts_changed_files_and_names_none() -> None:
    """Warnings are logged: the count is there, the names (the app's data)
    are in contents.changed_files only, the first CHANGED_NAMES_MAX of them."""
    summary = ArchiveSummary()
    for i in range(CHANGED_NAMES_MAX + 5):
        summary.add(
            ManifestEntry(
                path=f"volumes/v/secret-name-{i}", type="file", size=1, mode=0o644, uid=0,
                gid=0, mtime_ns=0, changed_during_read=True,
            )
        )  # fmt: skip
    summary.add(ManifestEntry(path="volumes/v/ok", type="file", size=1, mode=0o644, uid=0,
                              gid=0, mtime_ns=0))  # fmt: skip
    summary.note_changed("volumes/v/swapped-dir")  # changed type mid-walk
    [warning] = changed_warnings(summary)
    assert warning.startswith(f"{CHANGED_NAMES_MAX + 6} file(s) changed while the backup read")
    assert "secret-name" not in warning and "swapped-dir" not in warning
    assert len(summary.changed_files) == CHANGED_NAMES_MAX
    assert summary.changed_files[0] == "volumes/v/secret-name-0"
