"""Safe, faithful extraction of an archive's volumes into staging directories.

The archive is read once, front to back. Every member is checked (checks.py)
before anything is written for it, and everything is written relative to
directory fds opened one component at a time with O_NOFOLLOW, files created
with O_EXCL: nothing is ever written through a symlink, whether an earlier
member made it or it was already on disk. A member's parent must be a
directory an earlier member created, so pre-existing entries are never reused.

manifest.json comes last, so SHA-256s are computed while writing and compared
once the stream has ended; any difference raises ArchiveError and the caller
discards the staging dirs. Directory owners, modes and mtimes are applied only
then, deepest first (writing into a directory changes its mtime).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from engine.archive.layout import VOLUMES_DIR
from engine.archive.manifest import Manifest, ManifestEntry
from engine.errors import ArchiveError, EngineError
from engine.progress import Progress, ProgressCallback, no_progress
from engine.restore.checks import (
    Member,
    Placement,
    Seen,
    TarReader,
    check_symlink_target,
    compare_manifest,
    hardlink_source,
    place,
    split_name,
)

MAX_JSON = 1 << 30  # manifest.json of a few million files still fits
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors that mean "something is in the way": the archive or the staging dir is hostile.
_REFUSALS = {errno.EEXIST, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EXDEV}


@dataclass
class VolumeStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0


@dataclass
class ExtractReport:
    backup: dict[str, Any]  # backup.json
    manifest: Manifest
    volumes: dict[str, VolumeStats]
    spooled: dict[str, Path] = field(default_factory=dict)  # member name -> file in spool_dir
    skipped_members: int = 0  # read past: volumes not asked for, or no spool_dir


def extract_volumes(
    stream: BinaryIO,
    targets: Mapping[str, Path],
    *,
    spool_dir: Path | None = None,
    progress: ProgressCallback = no_progress,
    bytes_total: int | None = None,
    skip_other_members: bool = True,
) -> ExtractReport:
    """Extract volumes/<name>/ of the tar STREAM (decrypted and decompressed)
    into TARGETS[name], each an empty staging dir; the dir itself takes the
    archived volume root's owner, mode and mtime.

    databases/... and config/... members are written under SPOOL_DIR with
    their member names (e.g. SPOOL_DIR/databases/db-1/app.sql, mode 0600).
    With SKIP_OTHER_MEMBERS, volumes not in TARGETS (but listed in
    backup.json) and, without SPOOL_DIR, dumps and config are read past;
    otherwise they are an error. Raises ArchiveError on any hostile or
    inconsistent member, on a truncated stream, and when the content does not
    match manifest.json; nothing is ever written outside TARGETS and SPOOL_DIR.
    Other failures (a full disk) raise EngineError. Either way the caller
    discards the staging dirs. STREAM is read to its end, on a helper thread.
    """
    extractor = _Extractor(targets, spool_dir, skip_other_members, progress, bytes_total)
    source = Source(stream)
    try:
        reader = TarReader(source)
        while (member := reader.next()) is not None:
            extractor.member(member, source)
        source.drain()
        return extractor.finish()
    finally:
        extractor.close()
        source.close()


def _fs_error(name: str, exc: OSError) -> EngineError:
    if exc.errno in _REFUSALS:
        return ArchiveError(f"member {name!r} refused: {exc.strerror} (something is in the way)")
    return EngineError(f"cannot extract {name!r}: {exc.strerror}")


class _Extractor:
    def __init__(
        self,
        targets: Mapping[str, Path],
        spool_dir: Path | None,
        skip_other: bool,
        progress: ProgressCallback,
        bytes_total: int | None,
    ) -> None:
        self.trees: dict[str, Tree] = {}
        self.spool: Tree | None = None
        self.seen: dict[str, Seen] = {}
        self.backup: dict[str, Any] | None = None
        self.manifest: Manifest | None = None
        self.archived_volumes: set[str] = set()
        self.stats = {volume: VolumeStats() for volume in targets}
        self.report_spooled: dict[str, Path] = {}
        self.skipped = 0
        self.dir_meta: list[tuple[Tree, tuple[str, ...], Member, str]] = []
        self.holey: list[str] = []  # files written with holes, checked against `sparse`
        self.skip_other = skip_other
        self.progress = progress
        self.bytes_total = bytes_total
        self.bytes_done = 0
        self.last_report = time.monotonic()
        self.spool_dir = spool_dir
        if len({os.path.realpath(path) for path in targets.values()}) < len(targets):
            raise ValueError("each volume needs its own staging directory")
        try:
            for volume, path in targets.items():
                if len(split_name(volume, "volume")) != 1:
                    raise ArchiveError(f"invalid volume name {volume!r}")
                self.trees[volume] = Tree(Path(path))
            self.spool = Tree(spool_dir) if spool_dir is not None else None
        except OSError as exc:
            self._close_trees()
            raise EngineError(f"cannot open staging directory: {exc}") from exc
        except BaseException:
            self._close_trees()
            raise
        self.hasher = Hasher()

    def close(self) -> None:
        self.hasher.close()
        self._close_trees()

    def _close_trees(self) -> None:
        for tree in [*self.trees.values(), *([self.spool] if self.spool else [])]:
            tree.close()

    # -- one member ------------------------------------------------------------

    def member(self, member: Member, source: Source) -> None:
        parts = split_name(member.name)
        name, kind = "/".join(parts), member.kind
        if name in self.seen:
            raise ArchiveError(f"duplicate member {name!r}")
        if self.manifest is not None:
            raise ArchiveError(f"member {name!r} comes after manifest.json")
        if self.backup is None and parts != ("backup.json",):
            raise ArchiveError(f"backup.json must be the first member, not {name!r}")
        spot = place(parts, self.trees, self.archived_volumes, self.spool is not None,
                     self.skip_other)  # fmt: skip
        linkname = member.linkname
        if kind == "hardlink":
            linkname = hardlink_source(member, spot, self.seen)
        if spot.area in ("backup", "manifest"):
            self._json_member(member, spot, name, source)
        elif spot.area == "volume":
            self._volume_member(member, spot, name, linkname, source)
        elif spot.area == "spool":
            self._spool_member(member, spot.parts, name, source)
        else:
            self.skipped += 1
        if spot.area != "manifest":
            self.seen[name] = Seen(kind, member.size, member.mode, member.uid, member.gid,
                                   member.mtime_ns, linkname, spot.area != "skip")  # fmt: skip
        self.bytes_done += member.size
        if time.monotonic() - self.last_report >= 0.5:
            self.last_report = time.monotonic()
            self.progress(Progress("restoring", self.bytes_done, self.bytes_total, name))

    def _json_member(self, member: Member, spot: Placement, name: str, source: Source) -> None:
        if member.kind != "file" or member.size > MAX_JSON:
            raise ArchiveError(f"{name} is not a plausible JSON file")
        raw = source.read(member.size)
        if len(raw) != member.size:
            raise ArchiveError(f"archive truncated inside {name}")
        try:
            if spot.area == "manifest":
                self.manifest = Manifest.from_bytes(raw)
                return
            backup = json.loads(raw)
            listed = backup.get("volumes") or []
            self.archived_volumes = {v["name"] if isinstance(v, dict) else v for v in listed}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArchiveError(f"{name} is unreadable: {exc!r}") from exc
        self.backup = backup
        self.hasher.digests[name] = hashlib.sha256(raw).hexdigest()
        missing = sorted(set(self.trees) - self.archived_volumes) if listed else []
        if missing:
            raise ArchiveError(f"the archive has no volume {missing[0]!r}")

    def _volume_member(
        self, member: Member, spot: Placement, name: str, linkname: str, source: Source
    ) -> None:
        tree, parts, stats = self.trees[spot.root], spot.parts, self.stats[spot.root]
        kind, mtime = member.kind, member.mtime_ns
        if not parts:  # the volume root: the staging dir itself
            if kind != "dir":
                raise ArchiveError(f"volume root {name!r} is not a directory")
            self.dir_meta.append((tree, parts, member, name))
            return
        if parts[:-1] not in tree.dirs:
            raise ArchiveError(f"member {name!r}: its parent is not an earlier directory member")
        if kind == "symlink":
            check_symlink_target(name, member.linkname)
        tree.trim()
        leaf = parts[-1]
        try:
            parent = tree.dir_fd(parts[:-1])
            if kind == "dir":
                os.mkdir(leaf, 0o700, dir_fd=parent)  # private until finish() sets the mode
                tree.dirs.add(parts)
                self.dir_meta.append((tree, parts, member, name))
                stats.dirs += 1
            elif kind == "file":
                self._write_file(parent, leaf, member, name, source, owner=True)
                stats.files += 1
                stats.bytes += member.size
            elif kind == "symlink":
                os.symlink(member.linkname, leaf, dir_fd=parent)
                os.chown(leaf, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
                os.utime(leaf, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
                stats.symlinks += 1
            else:
                src = tuple(linkname.split("/")[2:])
                src_parent = tree.dir_fd(src[:-1])
                os.link(src[-1], leaf, src_dir_fd=src_parent, dst_dir_fd=parent,
                        follow_symlinks=False)  # fmt: skip
                stats.hardlinks += 1
        except OSError as exc:
            raise _fs_error(name, exc) from exc

    def _spool_member(
        self, member: Member, parts: tuple[str, ...], name: str, source: Source
    ) -> None:
        if member.kind != "file":
            raise ArchiveError(f"member {name!r} must be a regular file, not a {member.kind}")
        spool, spool_dir = self.spool, self.spool_dir
        if spool is None or spool_dir is None:  # place() only spools with a spool dir
            raise ArchiveError(f"member {name!r} has nowhere to go")
        try:
            spool.trim()
            parent = spool.make_dirs(parts[:-1])
            self._write_file(parent, parts[-1], member, name, source, owner=False)
        except OSError as exc:
            raise _fs_error(name, exc) from exc
        self.report_spooled[name] = spool_dir.joinpath(*parts)

    def _write_file(
        self, parent: int, leaf: str, member: Member, name: str, source: Source, owner: bool
    ) -> None:
        """Create LEAF (never existing, never through a symlink) and fill it."""
        fd = os.open(leaf, _CREATE, 0o600, dir_fd=parent)
        try:
            if write_data(fd, source, member.size, name, self.hasher):
                self.holey.append(name)
            _finish_file(fd, member, owner)
        finally:
            os.close(fd)

    # -- the end ---------------------------------------------------------------

    def finish(self) -> ExtractReport:
        digests = self.hasher.finish()
        if self.manifest is None or self.backup is None:
            raise ArchiveError("manifest.json is missing (archive truncated?)")
        errors, mtimes = compare_manifest(self.manifest, self.seen, digests)
        errors += [f"volume {v!r} has no member in the archive" for v in self._empty_volumes()]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise ArchiveError(f"archive does not match its manifest: {errors[0]}{more}")
        self._fix_files(mtimes)
        # Deepest first: a directory's metadata is final once its children are.
        for tree, parts, member, name in sorted(
            self.dir_meta, key=lambda meta: len(meta[1]), reverse=True
        ):
            mtime = mtimes.get(name, member.mtime_ns)
            try:
                tree.trim()
                fd = tree.dir_fd(parts)
                os.fchown(fd, member.uid, member.gid)
                os.fchmod(fd, member.mode)
                os.utime(fd, ns=(mtime, mtime))
            except OSError as exc:
                raise _fs_error(name, exc) from exc
        self.progress(Progress("restoring", self.bytes_done, self.bytes_total))
        return ExtractReport(
            backup=self.backup, manifest=self.manifest, volumes=self.stats,
            spooled=self.report_spooled, skipped_members=self.skipped,
        )  # fmt: skip

    def _empty_volumes(self) -> list[str]:
        prefixes = {f"{VOLUMES_DIR}/{volume}" for volume in self.trees}
        for name in self.seen:
            prefixes.discard("/".join(name.split("/", 2)[:2]))
        return sorted(prefix.split("/", 1)[1] for prefix in prefixes)

    def _fix_files(self, mtimes: dict[str, int]) -> None:
        """Where the manifest knows better than the tar header: exact mtimes,
        and files that had zero runs but no holes get their blocks back."""
        by_path = {entry.path: entry for entry in self.manifest.entries}  # type: ignore[union-attr]
        fill = {name for name in self.holey if not by_path[name].sparse}
        for name in sorted(fill | mtimes.keys()):
            parts, entry = name.split("/"), by_path[name]
            if parts[0] != VOLUMES_DIR or len(parts) < 3 or parts[1] not in self.trees:
                continue
            if entry.type in ("dir", "hardlink"):
                continue  # dirs come next; a hardlink is its file's inode
            tree = self.trees[parts[1]]
            try:
                tree.trim()
                tree.fix_file(tuple(parts[2:]), entry, fill=name in fill)
            except OSError as exc:
                raise _fs_error(name, exc) from exc


# -- plumbing: the stream, the hasher, the tree ----------------------------------

CHUNK = 1 << 20
PREFETCH = 16  # chunks read ahead: decompression runs while we write
HOLE_MIN = 4096  # zero runs at least this long are left as holes
_ZERO_RUN = bytes(HOLE_MIN)
_ZERO_CHUNK = bytes(CHUNK)
_NONZERO = re.compile(rb"[^\x00]")
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FD_CACHE = 64
LARGE_FILE = 1 << 20  # files this large are hashed on the hasher thread


class Source:
    """Forward-only reader over the tar stream. A thread reads ahead (zstd
    releases the GIL, so decompression runs beside our writes). TarReader
    reads headers through read/tell/seek; file data is taken as (buffer,
    start, end) ranges of the read-ahead chunks, never copied."""

    def __init__(self, stream: BinaryIO) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(PREFETCH)
        self._stop = threading.Event()
        self._buf = b""
        self._start = 0
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._fill, args=(stream,), daemon=True)
        self._thread.start()

    def _fill(self, stream: BinaryIO) -> None:
        try:
            while not self._stop.is_set():
                data = stream.read(CHUNK)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # delivered to the reading thread
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def take(self, n: int) -> tuple[bytes, int, int]:
        """Up to N bytes as (buffer, start, end); start == end at the end."""
        if self._start >= len(self._buf):
            if self._eof:
                return b"", 0, 0
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                if isinstance(item, EngineError):
                    raise item
                raise ArchiveError(f"archive stream is unreadable: {item}") from item
            if not item:
                self._eof = True
                return b"", 0, 0
            self._buf, self._start = item, 0
        start = self._start
        end = min(len(self._buf), start + n)
        self._start = end
        self._pos += end - start
        return self._buf, start, end

    def read(self, n: int) -> bytes:
        start = self._start
        if start + n <= len(self._buf):  # the common case: a header in this chunk
            self._start = start + n
            self._pos += n
            return self._buf[start : start + n]
        parts = []
        while n > 0:
            buf, start, end = self.take(n)
            if start == end:
                break
            parts.append(buf[start:end])
            n -= end - start
        return b"".join(parts)

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> int:
        if pos == self._pos:
            return pos
        if pos < self._pos:
            raise ArchiveError("archive stream cannot seek backwards")
        while self._pos < pos:
            _, start, end = self.take(pos - self._pos)
            if start == end:
                break
        return self._pos

    def drain(self) -> None:
        """Read to the end, so the decompressor and decryptor check the
        stream's own end (truncation, authentication of the last chunk)."""
        while self.take(CHUNK)[2]:
            pass

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)


class Hasher:
    """SHA-256 of large files, on its own thread: the main thread writes
    while this one hashes (both release the GIL, so two cores work). Small
    files are hashed in place: handing them over costs more than it saves."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}  # of every file, small ones included
        self._queue: queue.Queue[tuple[str, memoryview, bool] | None] = queue.Queue(32)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, name: str, data: memoryview, last: bool) -> None:
        self._queue.put((name, data, last))

    def _run(self) -> None:
        running: dict[str, Any] = {}
        while (item := self._queue.get()) is not None:
            name, data, last = item
            try:
                digest = running.pop(name, None) or hashlib.sha256()
                digest.update(data)
                if last:
                    self.digests[name] = digest.hexdigest()
                else:
                    running[name] = digest
            except BaseException as exc:  # reported by finish(); keep draining
                self._error = exc

    def finish(self) -> dict[str, str]:
        self.close()
        if self._error is not None:
            raise self._error
        return self.digests

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _finish_file(fd: int, member: Member, owner: bool) -> None:
    """After the data: owner, mode (after chown, which clears setuid bits), mtime."""
    if owner:
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode)
    os.utime(fd, ns=(member.mtime_ns, member.mtime_ns))


class Tree:
    """One extraction root (a staging or spool dir), written only through
    directory fds opened one component at a time with O_NOFOLLOW."""

    def __init__(self, root: Path) -> None:
        self.fd = os.open(root, _DIR_OPEN)
        self._fds: dict[tuple[str, ...], int] = {(): self.fd}
        self.dirs: set[tuple[str, ...]] = {()}  # created by this extraction (and the root)

    def dir_fd(self, parts: tuple[str, ...]) -> int:
        fd = self._fds.get(parts)
        if fd is not None:
            return fd
        known = len(parts) - 1
        while parts[:known] not in self._fds:
            known -= 1
        fd = self._fds[parts[:known]]
        for depth in range(known, len(parts)):
            fd = os.open(parts[depth], _DIR_OPEN, dir_fd=fd)
            self._fds[parts[: depth + 1]] = fd
        return fd

    def make_dirs(self, parts: tuple[str, ...]) -> int:
        """PARTS as directories (0700) this extraction creates; the fd of the last."""
        for depth in range(1, len(parts) + 1):
            if parts[:depth] not in self.dirs:
                os.mkdir(parts[depth - 1], 0o700, dir_fd=self.dir_fd(parts[: depth - 1]))
                self.dirs.add(parts[:depth])
        return self.dir_fd(parts)

    def fix_file(self, parts: tuple[str, ...], entry: ManifestEntry, fill: bool) -> None:
        parent = self.dir_fd(parts[:-1])
        if entry.type == "symlink":
            ns = (entry.mtime_ns, entry.mtime_ns)
            os.utime(parts[-1], ns=ns, dir_fd=parent, follow_symlinks=False)
            return
        fd = os.open(parts[-1], os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            if fill:  # allocate the holes: same content, as the source was
                os.posix_fallocate(fd, 0, entry.size)
                os.fchmod(fd, entry.mode)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)

    def trim(self) -> None:
        """Bound the open fds; called between members, never while one is in use."""
        if len(self._fds) > FD_CACHE:
            for parts, fd in self._fds.items():
                if parts:
                    os.close(fd)
            self._fds = {(): self.fd}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}


def write_data(fd: int, source: Source, size: int, name: str, hasher: Hasher) -> bool:
    """Copy SIZE bytes of member data into FD (new, so empty) and hash them.
    Zero runs are not written: they read back as zeros, and long ones become
    holes as in the source. True when any zeros were skipped."""
    digest = hashlib.sha256() if size < LARGE_FILE else None
    offset = data_end = 0
    holes = False
    while offset < size:
        buf, start, end = source.take(size - offset)
        if start == end:
            raise ArchiveError(f"archive truncated inside member {name!r}")
        if digest is None:
            hasher.add(name, memoryview(buf)[start:end], offset + end - start == size)
        else:
            digest.update(memoryview(buf)[start:end])
        written, skipped = _write_piece(fd, buf, start, end, offset)
        data_end, holes = max(data_end, written), holes or skipped
        offset += end - start
    if digest is not None:
        hasher.digests[name] = digest.hexdigest()
    if data_end < size:  # ends with zeros: the size comes from truncate
        os.ftruncate(fd, size)
    return holes


def _write_piece(fd: int, buf: bytes, start: int, end: int, offset: int) -> tuple[int, bool]:
    """Write buf[start:end] at file OFFSET, leaving out zero runs of HOLE_MIN
    bytes or more (and small all-zero pieces). Returns (file offset past the
    last byte written, or 0; whether anything was left out)."""
    view = memoryview(buf)
    if end - start < HOLE_MIN:
        if buf[start] == 0 and buf.count(0, start, end) == end - start:
            return 0, True
        _pwrite(fd, view[start:end], offset)
        return offset + end - start, False
    # Any run of HOLE_MIN zeros covers two consecutive samples HOLE_MIN/2
    # apart: without a "\0\0" among them there is no run (the common case).
    if b"\0\0" not in buf[start : end : HOLE_MIN // 2]:
        _pwrite(fd, view[start:end], offset)
        return offset + end - start, False
    if end - start == CHUNK and buf.startswith(_ZERO_CHUNK, start):
        return 0, True
    pos = search = start
    last = 0
    skipped = False
    while (zero := buf.find(_ZERO_RUN, search, end)) >= 0:
        run_end = zero + HOLE_MIN
        while run_end + HOLE_MIN <= end and buf.startswith(_ZERO_RUN, run_end):
            run_end += HOLE_MIN
        nonzero = _NONZERO.search(buf, run_end, min(end, run_end + HOLE_MIN))
        run_end = nonzero.start() if nonzero else min(end, run_end + HOLE_MIN)
        if zero > pos:
            _pwrite(fd, view[pos:zero], offset + pos - start)
            last = offset + zero - start
        pos = search = run_end
        skipped = True
    if pos < end:
        _pwrite(fd, view[pos:end], offset + pos - start)
        last = offset + end - start
    return last, skipped


def _pwrite(fd: int, data: memoryview, offset: int) -> None:
    while data:
        done = os.pwrite(fd, data, offset)
        if done <= 0:
            raise OSError(errno.EIO, "write made no progress")
        data = data[done:]
        offset += done
