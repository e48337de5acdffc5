"""LocalStorage on real disks: what the conformance suite cannot see through
the protocol (temp files, modes, fsync order, directories), a real filesystem
running out of space, and a writer killed mid-write."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import ObjectNotFound, StorageError, StorageFull
from storage.base import TEMP_MARKER
from storage.local import LocalStorage
from tests.storage.conftest import SMALL_CAPACITY

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "wordpress_ab12c/backup_20260105_103000_3fa2c1.tar.zst.age"


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "backups")


def put(storage: LocalStorage, key: str, data: bytes) -> None:
    with storage.open_writer(key) as writer:
        writer.write(data)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- temp file, rename, modes ---------------------------------------------------


def test_writes_go_to_a_private_temp_file_beside_the_final_name(local: LocalStorage) -> None:
    writer = local.open_writer(KEY)
    writer.write(b"x" * 1000)
    app_dir = local.root / "wordpress_ab12c"

    [temp] = os.listdir(app_dir)
    assert temp.startswith(TEMP_MARKER) and temp.endswith("-" + KEY.split("/")[1])
    assert writer.temp_path == app_dir / temp
    assert mode(app_dir / temp) == 0o600

    writer.commit()
    assert os.listdir(app_dir) == [KEY.split("/")[1]]
    final_mode = mode(local.root / KEY)
    assert final_mode & ~0o640 == 0, oct(final_mode)
    assert (local.root / KEY).read_bytes() == b"x" * 1000


def test_directories_are_created_private_enough(local: LocalStorage) -> None:
    put(local, "a/b/c", b"1")
    for directory in (local.root, local.root / "a", local.root / "a" / "b"):
        assert directory.is_dir()
        assert mode(directory) & 0o027 == 0, (directory, oct(mode(directory)))


def test_commit_fsyncs_the_file_renames_then_fsyncs_the_directory(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = local.open_writer(KEY)
    writer.write(b"durable")
    app_dir_inode = (local.root / "wordpress_ab12c").stat().st_ino
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            # Every byte written must already be in the file when it is fsynced.
            events.append(f"fsync file of {st.st_size} bytes")
        elif st.st_ino == app_dir_inode:
            events.append("fsync app dir")
        else:
            events.append("fsync other dir")
        real_fsync(fd)

    def replace(src: Path, dst: Path) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    writer.commit()
    assert events == ["fsync file of 7 bytes", "rename", "fsync app dir"]


def test_new_directories_are_fsynced_into_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path / "backups")
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    storage.open_writer("newapp/file").abort()
    # root made inside tmp_path, then newapp inside root: both entries made durable.
    assert tmp_path.stat().st_ino in synced
    assert storage.root.stat().st_ino in synced


def test_overwrite_is_an_atomic_rename(local: LocalStorage) -> None:
    put(local, KEY, b"old version")
    old_inode = (local.root / KEY).stat().st_ino
    with local.open(KEY) as reader:
        put(local, KEY, b"new version")
        # A reader of the old file keeps reading it whole: it was replaced, not rewritten.
        assert reader.read() == b"old version"
    assert (local.root / KEY).stat().st_ino != old_inode
    assert (local.root / KEY).read_bytes() == b"new version"


# -- directories --------------------------------------------------------------


def test_root_is_created_on_first_write_not_before(local: LocalStorage) -> None:
    assert list(local.list()) == []
    assert not local.root.exists()
    assert isinstance(local.free_bytes(), int)
    put(local, KEY, b"1")
    assert (local.root / KEY).is_file()


def test_delete_removes_empty_app_directories_but_never_the_root(local: LocalStorage) -> None:
    put(local, "a/b/c", b"1")
    put(local, "top", b"2")
    local.delete("a/b/c")
    assert not (local.root / "a").exists()
    local.delete("top")
    assert local.root.is_dir()
    assert os.listdir(local.root) == []


def test_delete_keeps_directories_that_hold_other_objects(local: LocalStorage) -> None:
    put(local, "app/1", b"1")
    put(local, "app/2", b"2")
    local.delete("app/1")
    assert os.listdir(local.root / "app") == ["2"]


def test_abort_removes_the_directory_it_created(local: LocalStorage) -> None:
    put(local, "other/1", b"1")
    local.open_writer("newapp/file").abort()
    assert sorted(os.listdir(local.root)) == ["other"]


def test_directories_and_paths_through_files_are_not_objects(local: LocalStorage) -> None:
    put(local, "app/file", b"1")
    for key in ("app", "app/file/deeper"):
        assert not local.exists(key)
        with pytest.raises(ObjectNotFound):
            local.open(key)
        with pytest.raises(ObjectNotFound):
            local.delete(key)
    assert local.exists("app/file")


def test_list_shows_only_objects_a_key_can_name(local: LocalStorage) -> None:
    put(local, "app/real", b"1")
    app_dir = local.root / "app"
    (app_dir / f"{TEMP_MARKER}deadbeef-real").write_bytes(b"leftover")
    (app_dir / "back\\slash").write_bytes(b"stray")
    (app_dir / "link").symlink_to(app_dir / "real")
    (local.root / f"{TEMP_MARKER}dir").mkdir()
    (local.root / f"{TEMP_MARKER}dir" / "x").write_bytes(b"stray")
    (app_dir / "copied-in").write_bytes(b"an operator put this here")
    assert [info.key for info in local.list()] == ["app/copied-in", "app/real"]


def test_errors_name_the_root(tmp_path: Path) -> None:
    root = tmp_path / "not-a-directory"
    root.write_bytes(b"")
    storage = LocalStorage(root)
    with pytest.raises(StorageError, match=str(root)) as caught:
        storage.open_writer(KEY)
    assert not isinstance(caught.value, StorageFull)


# -- errors while writing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [(errno.ENOSPC, StorageFull), (errno.EDQUOT, StorageFull), (errno.EIO, StorageError)],
)
def test_fsync_errors_become_storage_errors_and_leave_nothing(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch, code: int, expected: type
) -> None:
    put(local, KEY, b"earlier")
    writer = local.open_writer(KEY)
    writer.write(b"later")
    temp = writer.temp_path
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError) as caught:
        writer.commit()
    assert type(caught.value) is expected
    assert str(local.root) in str(caught.value)
    assert not temp.exists()
    assert (local.root / KEY).read_bytes() == b"earlier"


def test_a_failed_directory_fsync_leaves_no_final_name(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = local.open_writer(KEY)
    writer.write(b"maybe not durable")
    real_fsync = os.fsync

    def failing_dir_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_dir_fsync)
    with pytest.raises(StorageError, match="I/O error"):
        writer.commit()
    assert not local.exists(KEY)


# -- a real filesystem that fills up -------------------------------------------------


def test_disk_full_on_a_real_filesystem(small_tmpfs: Path) -> None:
    storage = LocalStorage(small_tmpfs)
    earlier = os.urandom(300 * 1024)
    put(storage, "app/earlier", earlier)

    with pytest.raises(StorageFull) as caught, storage.open_writer("app/big") as writer:
        for _ in range(16):  # 2 MiB into a 1 MiB tmpfs
            writer.write(os.urandom(128 * 1024))

    assert str(small_tmpfs) in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert os.listdir(small_tmpfs / "app") == ["earlier"]  # no final name, no temp file
    assert (small_tmpfs / "app" / "earlier").read_bytes() == earlier
    assert storage.open("app/earlier").read() == earlier


def test_disk_full_for_a_new_app_leaves_no_directory(small_tmpfs: Path) -> None:
    storage = LocalStorage(small_tmpfs)
    with pytest.raises(StorageFull), storage.open_writer("newapp/big") as writer:
        writer.write(os.urandom(2 * SMALL_CAPACITY))
    assert os.listdir(small_tmpfs) == []


def test_no_room_for_the_temp_file_leaves_no_directory(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def full_open(path: Path, flags: int, mode: int = 0o777) -> int:
        if Path(path).name.startswith(TEMP_MARKER):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, flags, mode)

    put(local, "other/1", b"1")
    monkeypatch.setattr(os, "open", full_open)
    with pytest.raises(StorageFull):
        local.open_writer("newapp/a/file")
    assert sorted(os.listdir(local.root)) == ["other"]


def test_free_bytes_follows_the_filesystem(small_tmpfs: Path) -> None:
    storage = LocalStorage(small_tmpfs)
    empty = storage.free_bytes()
    assert empty is not None and SMALL_CAPACITY - 64 * 1024 <= empty <= SMALL_CAPACITY
    put(storage, "app/file", os.urandom(256 * 1024))
    used = storage.free_bytes()
    assert used is not None and empty - used >= 256 * 1024


# -- a writer killed mid-write -----------------------------------------------------------

# A worker process that dies (OOM killer, SIGKILL, power loss) runs no cleanup at all.
CRASHING_WRITER = """
import os, sys
from pathlib import Path
from storage.local import LocalStorage

writer = LocalStorage(Path(sys.argv[1])).open_writer(sys.argv[2])
for _ in range(24):
    writer.write(os.urandom(64 * 1024))
print(writer.temp_path, flush=True)
sys.stdin.read()  # wait here, mid-write, until killed
"""


@pytest.mark.parametrize("existing", [None, b"the previous backup"])
def test_a_killed_writer_leaves_no_final_name_and_its_partial_is_swept(
    local: LocalStorage, existing: bytes | None
) -> None:
    if existing is not None:
        put(local, KEY, existing)
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(local.root), KEY],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        temp = Path(child.stdout.readline().decode().strip())
        assert temp.is_file(), "the child did not get to write"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert temp.stat().st_size > 0  # half an archive, under a temp name only
    if existing is None:
        assert not local.exists(KEY)
        assert list(local.list()) == []
    else:
        assert local.open(KEY).read() == existing
    # Too young to sweep: it could be a live writer.
    assert local.sweep_partials(3600) == []

    old = time.time() - 7200
    os.utime(temp, (old, old))
    assert local.sweep_partials(3600) == [f"wordpress_ab12c/{temp.name}"]
    assert not temp.exists()
    if existing is None:
        assert os.listdir(local.root) == []  # the app directory went with it
    else:
        assert os.listdir(local.root / "wordpress_ab12c") == [KEY.split("/")[1]]


def test_sweep_partials_by_age_keeps_live_writers(local: LocalStorage) -> None:
    old = time.time() - 7200
    stale = local.open_writer("app/stale")
    stale.write(b"stale")
    os.utime(stale.temp_path, (old, old))
    stray = local.root / "other" / f"{TEMP_MARKER}0123-x"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"from an older version")
    os.utime(stray, (old, old))
    live = local.open_writer("app/live")
    live.write(b"live")

    removed = local.sweep_partials(3600)

    assert removed == [f"app/{stale.temp_path.name}", f"other/{stray.name}"]
    assert not (local.root / "other").exists()
    live.commit()
    assert local.open("app/live").read() == b"live"
