"""A volume's members swapped for symlinks while the backup walks it (issue 19, point 4).

A container can exchange a directory `d` and a symlink `s -> /host/dir` of
its volume in a loop (renameat2 RENAME_EXCHANGE). The walk of paths used to
list `s` after lstat had seen a directory there, and archive host files as
`volumes/v/s/...`, or die on readlink (EINVAL) when a directory came back.
The race runs for real here: a thread swaps while backups run. The
deterministic tests make the swap at the worst moment, from a hook on the
walk's own stat call, so each case is exercised on every run.
"""

from __future__ import annotations

import ctypes
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.archive.manifest import Manifest
from engine.archive.reader import scan_archive
from engine.archive.writer import ArchiveWriter

SECRET = b"-----BEGIN HOST PRIVATE KEY----- not volume data"
RUNS = 12
_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> None:
    """Swap the two names atomically, as a container's process can."""
    if _LIBC.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _host_dir(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    host.mkdir()
    for i in range(40):
        (host / f"key{i}.pem").write_bytes(SECRET)
    return host


def _volume(tmp_path: Path, host: Path) -> Path:
    volume = tmp_path / "v"
    (volume / "d").mkdir(parents=True)
    for i in range(40):
        (volume / "d" / f"page{i}.txt").write_text(f"volume page {i}")
    (volume / "other").mkdir()
    for i in range(200):  # more to walk: the swaps land all along the walk
        (volume / "other" / f"f{i}").write_text("x" * i)
    os.symlink(host, volume / "s")
    return volume


def _backup(volume: Path) -> tuple[bytes, ArchiveWriter]:
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"))
    writer.add_backup_json({"volumes": [{"name": "v"}]})  # restorable: verify checks as restore
    writer.add_volume("v", volume)
    writer.close()
    return out.getvalue(), writer


def _assert_no_host_member(raw: bytes) -> list[tarfile.TarInfo]:
    """Every member is the volume's own; none holds a host file's bytes."""
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        members = tar.getmembers()
        for member in members:
            assert member.name in ("backup.json", "manifest.json") or member.name.startswith(
                "volumes/v"
            )
            assert not member.name.rsplit("/", 1)[-1].startswith("key"), member.name
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None and SECRET not in handle.read(), member.name
    return members


def test_swapping_a_dir_and_a_host_symlink_in_a_loop_never_archives_host_files(
    tmp_path: Path,
) -> None:
    """The swapper is another process, as the container's would be: it runs on
    its own core, without waiting for our GIL."""
    host = _host_dir(tmp_path)
    volume = _volume(tmp_path, host)
    swaps = tmp_path / "swaps"
    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, str(volume / "d"), str(volume / "s"), str(swaps)]
    )
    try:
        while not swaps.exists():  # swapping before the first backup starts
            time.sleep(0.01)
        raced = 0  # backups during which the names moved (a loaded machine may starve it)
        for _ in range(RUNS):
            before = swaps.stat().st_size
            raw, _ = _backup(volume)
            raced += swaps.stat().st_size > before
            members = _assert_no_host_member(raw)
            report = scan_archive(io.BytesIO(raw))
            assert report.valid, report.errors  # what verify --deep checks
            # s is whatever it was when listed: a symlink (no children) or the
            # volume's own directory d under the other name.
            assert any(m.name == "volumes/v/other/f199" for m in members)
    finally:
        swapper.terminate()
        swapper.wait()
    assert raced >= RUNS // 2
    assert swapper.returncode == -signal.SIGTERM  # it swapped until stopped, no error


# Swaps argv[1] and argv[2] until killed; appends a byte to argv[3] every 10 swaps.
_SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
with open(sys.argv[3], "ab", buffering=0) as counter:
    while True:
        for _ in range(10):
            if libc.renameat2(-100, a, -100, b, 2):
                raise OSError(ctypes.get_errno(), "renameat2")
        counter.write(b".")
"""


def _swap_after_stat(
    monkeypatch: pytest.MonkeyPatch, leaf: str, swap: Callable[[], None]
) -> list[int]:
    """Run SWAP right after the walk's first fstatat of LEAF: the container
    acting between our listing and our opening. Returns the swap counter."""
    real_stat = os.stat
    done = [0]

    def stat_then_swap(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = real_stat(path, *args, **kwargs)
        if path == leaf and kwargs.get("dir_fd") is not None and not done[0]:
            done[0] += 1
            swap()
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    return done


def test_a_dir_swapped_for_a_host_symlink_after_listing_is_noted_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _host_dir(tmp_path)
    volume = _volume(tmp_path, host)
    done = _swap_after_stat(monkeypatch, "d", lambda: exchange(volume / "d", volume / "s"))
    raw, writer = _backup(volume)
    monkeypatch.undo()
    assert done == [1]
    _assert_no_host_member(raw)
    assert {"path": "volumes/v/d", "reason": "changed type during the backup"} in (
        writer.manifest.skipped
    )
    assert "volumes/v/d" in writer.summary.changed_files
    assert writer.summary.changed_during_read >= 1


def test_a_symlink_swapped_for_a_dir_before_readlink_does_not_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was Errno 22 (EINVAL) from readlink: the whole backup failed."""
    volume = _volume(tmp_path, _host_dir(tmp_path))
    done = _swap_after_stat(monkeypatch, "s", lambda: exchange(volume / "d", volume / "s"))
    raw, writer = _backup(volume)
    monkeypatch.undo()
    assert done == [1]
    _assert_no_host_member(raw)
    assert "volumes/v/s" in writer.summary.changed_files
    assert scan_archive(io.BytesIO(raw)).valid


def test_a_file_swapped_for_a_symlink_to_a_host_file_is_not_read_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _host_dir(tmp_path)
    volume = _volume(tmp_path, host)
    os.symlink(host / "key0.pem", volume / "link-to-host")
    done = _swap_after_stat(
        monkeypatch, "page3.txt",
        lambda: exchange(volume / "d" / "page3.txt", volume / "link-to-host"),
    )  # fmt: skip
    raw, writer = _backup(volume)
    monkeypatch.undo()
    assert done == [1]
    _assert_no_host_member(raw)
    assert "volumes/v/d/page3.txt" in writer.summary.changed_files


def test_a_file_swapped_for_a_fifo_neither_hangs_nor_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = _volume(tmp_path, _host_dir(tmp_path))
    os.mkfifo(volume / "pipe")
    done = _swap_after_stat(
        monkeypatch, "page5.txt", lambda: exchange(volume / "d" / "page5.txt", volume / "pipe")
    )
    raw, writer = _backup(volume)
    monkeypatch.undo()
    assert done == [1]
    assert "volumes/v/d/page5.txt" in writer.summary.changed_files
    names = {m.name for m in _assert_no_host_member(raw)}
    assert "volumes/v/d/page5.txt" not in names


def test_a_file_replaced_by_another_after_listing_is_stored_as_opened_and_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = _volume(tmp_path, _host_dir(tmp_path))
    (volume / "new.txt").write_text("the new version")
    done = _swap_after_stat(
        monkeypatch, "page7.txt", lambda: os.rename(volume / "new.txt", volume / "d" / "page7.txt")
    )
    raw, writer = _backup(volume)
    monkeypatch.undo()
    assert done == [1]
    entry = next(e for e in writer.manifest.entries if e.path == "volumes/v/d/page7.txt")
    assert entry.changed_during_read and entry.size == len("the new version")
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        handle = tar.extractfile("volumes/v/d/page7.txt")
        assert handle is not None and handle.read() == b"the new version"
    assert scan_archive(io.BytesIO(raw)).valid
