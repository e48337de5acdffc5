"""The staging pass's write-back: the staged data is on disk when it ends, and
a write-back that fails never fails the restore (engine/restore/writeback.py)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from engine.restore import writeback
from engine.restore.writeback import Writeback

MIB = 1 << 20


def _dirty_bytes() -> int:
    """The host's dirty page cache (/proc/meminfo 'Dirty', kB)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Dirty:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Dirty line in /proc/meminfo")


def _write(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as out:
        for _ in range(size // MIB):
            out.write(block)


def test_the_staged_data_is_written_back_when_the_pass_finishes(tmp_path: Path) -> None:
    # tmp_path is on a disk filesystem here (ext4), not tmpfs: tmpfs pages are
    # never "dirty" and the check below would pass for nothing.
    written = 512 * MIB
    # Far below the kernel's background threshold (gigabytes on this host),
    # so without the write-back this data would still be dirty at the end.
    with Writeback([tmp_path], every=60) as flusher:  # only finish() syncs
        _write(tmp_path / "data", written)
        dirty_before = _dirty_bytes()
        flusher.finish()
    assert dirty_before >= written // 2, "the host wrote the data back on its own: no test"
    assert _dirty_bytes() < written // 4


def test_each_filesystem_is_synced_once_per_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = writeback.syncfs

    def counting(fd: int) -> None:
        synced.append(os.fstat(fd).st_dev)
        real(fd)

    monkeypatch.setattr(writeback, "syncfs", counting)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with Writeback([tmp_path / "a", tmp_path / "b"], every=60) as flusher:
        flusher.finish()
    assert synced == [os.stat(tmp_path).st_dev]


def test_a_failing_write_back_is_logged_once_and_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A syncfs that fails (EIO on a dying disk) cannot be made on demand here:
    # the call is replaced by one that raises, the thread and the rounds are real.
    calls: list[int] = []

    def failing(fd: int) -> None:
        calls.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(writeback, "syncfs", failing)
    caplog.set_level(logging.WARNING, logger=writeback.__name__)
    with Writeback([tmp_path, tmp_path / "missing"], every=0.01) as flusher:
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:  # the helper's rounds
            time.sleep(0.01)
        flusher.finish()
    assert len(calls) >= 4  # the rounds went on after the first failure
    messages = [record.getMessage() for record in caplog.records]
    assert sum("syncfs" in message for message in messages) == 1
    assert sum("missing" in message for message in messages) == 1
