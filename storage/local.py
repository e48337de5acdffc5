"""A directory on a local (or mounted) filesystem.

Keys map to paths under root. A write goes to a temporary file beside its
final name, is fsynced, renamed over the final name, and the directory is
fsynced: after a crash at any point there is either the complete old object or
the complete new one under the key, never a torn file (restic does the same).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from engine.errors import ObjectNotFound, StorageError, StorageFull
from storage.base import ObjectInfo, WriterLifecycle
from storage.keys import (
    is_partial_name,
    is_partial_of,
    partial_key,
    validate_key,
    validate_prefix,
)

# Out of space and out of quota mean the same to an operator: free some space.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# A missing object can show up as any of these, depending on what is in the way.
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})

_DIR_MODE = 0o750
# Temp files are private while incomplete; archives may hold database dumps,
# so the final file keeps the same mode (well within the 0640 ceiling).
_FILE_MODE = 0o600
_WRITE_BUFFER = 256 * 1024
# Every this many bytes, the writer asks the kernel to start writing back what
# it has (and to drop the pages already on disk): commit's fsync then waits
# for the last few MiB instead of the whole archive, and a multi-GB backup does
# not push the applications' own data out of the page cache.
_WRITEBACK_EVERY = 32 * 1024 * 1024
# delete() of an app's last object removes its directory; a writer that made
# that directory a moment earlier retries instead of failing.
_CREATE_ATTEMPTS = 3


class LocalStorage:
    def __init__(self, root: Path, name: str = "local") -> None:
        self.root = Path(root).absolute()
        self.name = name

    # -- writing -----------------------------------------------------------

    def open_writer(self, key: str) -> LocalWriter:
        validate_key(key)
        final = self._path(key)
        temp = self._path(partial_key(key))
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                self._make_dirs(final.parent)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
                fd = os.open(temp, flags, _FILE_MODE)
                break
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) and attempt < _CREATE_ATTEMPTS - 1:
                    continue
                self.prune_empty_dirs(final.parent)  # no empty app directory from a failure
                raise self.error(exc, f"creating {key}") from exc
        return LocalWriter(self, key, final, temp, fd)

    def error(self, exc: OSError, doing: str) -> StorageError:
        """The StorageError for an OSError; names the root and the key, never data."""
        if exc.errno in _FULL_ERRNOS:
            return StorageFull(
                f"storage {self.name!r} at {self.root} is full: {doing}: no space left"
            )
        reason = exc.strerror or str(exc)
        return StorageError(f"storage {self.name!r} at {self.root}: {doing} failed: {reason}")

    def _make_dirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.is_dir() and directory != directory.parent:
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            # A concurrent writer may have made it; if it is a file, os.open fails next.
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, _DIR_MODE)
            # The new directory entry must survive a crash like the file will.
            fsync_dir(path.parent)

    # -- reading -----------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        validate_key(key)
        try:
            return open(self._path(key), "rb")
        except OSError as exc:
            raise self._read_error(exc, key) from exc

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        try:
            st = os.stat(self._path(key))
        except OSError as exc:
            raise self._read_error(exc, key) from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"no object {key!r} in storage {self.name!r}")
        return _info(key, st)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def free_bytes(self) -> int | None:
        # Before the first write the root may not exist; its filesystem is the
        # one of the nearest existing ancestor.
        path = self.root
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            vfs = os.statvfs(path)
        except OSError as exc:
            raise self.error(exc, "reading free space") from exc
        return vfs.f_bavail * vfs.f_frsize

    def _read_error(self, exc: OSError, key: str) -> StorageError:
        if exc.errno in _MISSING_ERRNOS:
            return ObjectNotFound(f"no object {key!r} in storage {self.name!r}")
        return self.error(exc, f"reading {key}")

    # -- removing ----------------------------------------------------------

    def delete(self, key: str) -> None:
        validate_key(key)
        path = self._path(key)
        try:
            os.unlink(path)
        except OSError as exc:
            raise self._read_error(exc, key) from exc
        self.prune_empty_dirs(path.parent)

    def sweep_partials(self, older_than_seconds: float) -> list[str]:
        """Remove temp files not written to for at least older_than_seconds
        (mtime moves with every write, so a live writer stays young)."""
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must not be negative")
        cutoff = time.time() - older_than_seconds
        removed: list[str] = []
        # Collect first: removing files and directories while scandir walks them is fragile.
        partials = [(rel, e) for rel, e in self._walk("") if is_partial_name(e.name)]
        for rel, entry in partials:
            try:
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # its writer aborted or committed meanwhile
            except OSError as exc:
                raise self.error(exc, f"removing {rel}") from exc
            removed.append(rel)
            self.prune_empty_dirs(Path(entry.path).parent)
        return sorted(removed)

    def discard_partials(self, key: str) -> list[str]:
        validate_key(key)
        directory = self._path(key).parent
        removed: list[str] = []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return removed
        prefix = key.rpartition("/")[0]
        for name in names:
            temp_key = f"{prefix}/{name}" if prefix else name
            if is_partial_of(temp_key, key):
                _unlink_quietly(directory / name)
                removed.append(temp_key)
        self.prune_empty_dirs(directory)
        return sorted(removed)

    def prune_empty_dirs(self, directory: Path) -> None:
        """Remove directory and its parents while empty, up to (never) root."""
        # Directories exist per app; once an app's last object is gone its
        # directory goes too. The root itself always stays.
        while directory != self.root and self.root in directory.parents:
            try:
                os.rmdir(directory)
            except OSError:
                return  # not empty (or in use): stop here
            directory = directory.parent

    # -- listing -----------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Only the directory the prefix fully names needs walking.
        start = prefix.rpartition("/")[0]
        found: list[ObjectInfo] = []
        for key, entry in self._walk(start):
            if not key.startswith(prefix):
                continue
            try:
                validate_key(key)
                found.append(_info(key, entry.stat(follow_symlinks=False)))
            except ValueError:
                continue  # temp files, and stray files no key can name (a backslash in it)
            except FileNotFoundError:
                continue  # deleted while we walked
        found.sort(key=lambda info: info.key)
        return iter(found)

    def _walk(self, start: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Regular files (no symlinks) under root/start, with their relative path."""
        pending = [start]
        while pending:
            rel_dir = pending.pop()
            try:
                with os.scandir(self.root / rel_dir if rel_dir else self.root) as entries:
                    for entry in entries:
                        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(rel)
                        elif entry.is_file(follow_symlinks=False):
                            yield rel, entry
            except (FileNotFoundError, NotADirectoryError):
                continue  # nothing written there yet, or removed meanwhile
            except OSError as exc:
                raise self.error(exc, f"listing {rel_dir or '/'}") from exc

    def _path(self, key: str) -> Path:
        # Keys are validated: no "..", no leading "/", so this stays under root.
        return self.root.joinpath(*key.split("/"))


class LocalWriter(WriterLifecycle):
    """An AtomicWriter for LocalStorage; see storage.base.AtomicWriter."""

    def __init__(self, storage: LocalStorage, key: str, final: Path, temp: Path, fd: int) -> None:
        self._storage = storage
        self._key = key
        self._final = final
        self._temp = temp
        self._file = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)
        self._since_writeback = 0
        self._state = "open"  # -> "committed" | "aborted"
        self._info: ObjectInfo | None = None

    @property
    def temp_path(self) -> Path:
        """Where the bytes are until commit (tests and debugging)."""
        return self._temp

    def write(self, data: bytes) -> int:
        self._require_open()
        try:
            written = self._file.write(data)
            self._since_writeback += written
            if self._since_writeback >= _WRITEBACK_EVERY:
                self._since_writeback = 0
                # Linux: DONTNEED starts asynchronous writeback of dirty pages
                # and evicts clean ones; it does not wait for the disk.
                os.posix_fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            return written
        except OSError as exc:
            self.abort()
            raise self._storage.error(exc, f"writing {self._key}") from exc

    def commit(self) -> ObjectInfo:
        if self._info is not None:
            return self._info  # committing twice (e.g. commit() inside `with`) is fine
        self._require_open()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            st = os.fstat(self._file.fileno())
            self._file.close()
        except OSError as exc:
            self.abort()
            raise self._storage.error(exc, f"writing {self._key}") from exc
        try:
            os.replace(self._temp, self._final)
        except FileNotFoundError as exc:
            self.abort()
            raise StorageError(
                f"storage {self._storage.name!r} at {self._storage.root}: the partial file of "
                f"{self._key} disappeared before commit (removed by sweep_partials?)"
            ) from exc
        except OSError as exc:
            self.abort()
            raise self._storage.error(exc, f"committing {self._key}") from exc
        self._state = "committed"
        try:
            fsync_dir(self._final.parent)
        except OSError as exc:
            # The rename may not survive a crash; a commit that raises must not
            # leave a final name behind that the caller believes absent (on an
            # overwrite the old version is gone either way).
            _unlink_quietly(self._final)
            raise self._storage.error(exc, f"committing {self._key}") from exc
        self._info = _info(self._key, st)
        return self._info

    def abort(self) -> None:
        """Drop the temp file. Does nothing after commit() or a previous abort()."""
        if self._state != "open":
            return
        self._state = "aborted"
        # After ENOSPC the buffer cannot be flushed; close still releases the fd.
        with contextlib.suppress(OSError):
            self._file.close()
        _unlink_quietly(self._temp)
        # A first write for a new app made its directory; leave no empty one behind.
        self._storage.prune_empty_dirs(self._temp.parent)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file or subdirectory) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    # Already gone (swept, or never created): nothing left to clean.
    with contextlib.suppress(OSError):
        os.unlink(path)


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))
