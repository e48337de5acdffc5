"""Writes the archive tar stream (format v1) into any writable stream.

The tar is written in stream mode ("w|"): nothing is seeked, so the output can
flow straight into a compressor, an encryptor and storage with bounded memory.
Owners are stored numerically only (no user/group names), so `tar -x` as root
restores the same uid/gid inside the volume whatever users the host has.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from engine.archive.file_reader import FixedSizeFileReader
from engine.archive.layout import BACKUP_JSON, MANIFEST_JSON, volume_member
from engine.archive.manifest import Manifest, ManifestEntry
from engine.progress import Progress, ProgressCallback, no_progress

COPY_BUFSIZE = 1024 * 1024


class Writable(Protocol):
    def write(self, data: bytes) -> int: ...


class _TellingWriter:
    """What tarfile's mode "w" needs of a file: write, and tell at the start.
    Nothing is ever seeked, so the output may be a pipe or a compressor."""

    def __init__(self, out: Writable) -> None:
        self._out = out
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("archive output already closed")
        self._out.write(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position


class ArchiveWriter:
    """Usage: add_backup_json(), add_volume() for each volume, add_file() for
    dumps and config, then close() writes manifest.json and the tar end."""

    def __init__(
        self,
        out: Writable,
        manifest: Manifest,
        progress: ProgressCallback = no_progress,
        bytes_total: int | None = None,
    ) -> None:
        # Mode "w" on a write-only wrapper, not stream mode "w|": tarfile's
        # stream buffer concatenates bytes on every small write (quadratic on
        # many small files); here each write goes straight to the compressor.
        self._tar = tarfile.open(  # noqa: SIM115 - closed by close()
            fileobj=_TellingWriter(out),  # type: ignore[arg-type]
            mode="w",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            errors="surrogateescape",  # undecodable names are kept byte for byte
        )
        self._tar.copybufsize = COPY_BUFSIZE
        self.manifest = manifest
        self._progress = progress
        self._bytes_total = bytes_total
        self.bytes_read = 0
        self._last_report = 0.0

    # -- small members ---------------------------------------------------------

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600) -> ManifestEntry:
        entry = ManifestEntry(
            path=name, type="file", size=len(data), mode=mode, uid=0, gid=0,
            mtime_ns=time.time_ns(),
        )  # fmt: skip
        self._add_regular(entry, io.BytesIO(data))
        return entry

    def add_backup_json(self, info: dict[str, Any]) -> None:
        self.add_bytes(BACKUP_JSON, json.dumps(info, indent=2, sort_keys=True).encode(), 0o644)

    def add_file(self, name: str, path: Path, mode: int = 0o600) -> ManifestEntry:
        """A regular file (dump, config) under member NAME."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            entry = ManifestEntry(
                path=name, type="file", size=st.st_size, mode=mode, uid=0, gid=0,
                mtime_ns=st.st_mtime_ns,
            )  # fmt: skip
            self._add_from_fd(entry, fd, st)
        finally:
            os.close(fd)
        return entry

    # -- volumes ---------------------------------------------------------------

    def add_volume(self, volume: str, root: Path) -> None:
        """Every entry under ROOT, depth first in name order, never following
        symlinks. Entries that vanish while we walk (live apps) are skipped."""
        hardlinks: dict[tuple[int, int], str] = {}
        stack: list[str] = ["."]
        while stack:
            rel = stack.pop()
            path = root if rel == "." else root / rel
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self.manifest.skipped.append(
                    {"path": volume_member(volume, rel), "reason": "vanished"}
                )
                continue
            name = volume_member(volume, rel)
            if stat.S_ISDIR(st.st_mode):
                self._add_dir(name, st)
                try:
                    children = sorted(os.listdir(path), reverse=True)
                except FileNotFoundError:
                    continue
                stack.extend(child if rel == "." else f"{rel}/{child}" for child in children)
            elif stat.S_ISLNK(st.st_mode):
                self._add_symlink(name, path, st)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in hardlinks:
                    self._add_hardlink(name, hardlinks[key], st)
                    continue
                if self._add_volume_file(name, path, st) and st.st_nlink > 1:
                    hardlinks[key] = name
            else:
                # Sockets, FIFOs and devices cannot be restored safely: recorded, not stored.
                kind = {stat.S_IFSOCK: "socket", stat.S_IFIFO: "fifo"}.get(
                    stat.S_IFMT(st.st_mode), "device"
                )
                self.manifest.skipped.append({"path": name, "reason": kind})

    def _base_entry(self, name: str, kind: str, st: os.stat_result) -> ManifestEntry:
        return ManifestEntry(
            path=name, type=kind, size=0, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid,
            gid=st.st_gid, mtime_ns=st.st_mtime_ns, dev=st.st_dev, ino=st.st_ino,
            ctime_ns=st.st_ctime_ns,
        )  # fmt: skip

    def _add_dir(self, name: str, st: os.stat_result) -> None:
        entry = self._base_entry(name, "dir", st)
        info = self._tarinfo(entry, tarfile.DIRTYPE)
        self._tar.addfile(info)
        self.manifest.entries.append(entry)

    def _add_symlink(self, name: str, path: Path, st: os.stat_result) -> None:
        entry = self._base_entry(name, "symlink", st)
        try:
            entry.link_target = os.readlink(path)
        except FileNotFoundError:
            self.manifest.skipped.append({"path": name, "reason": "vanished"})
            return
        info = self._tarinfo(entry, tarfile.SYMTYPE)
        info.linkname = entry.link_target
        self._tar.addfile(info)
        self.manifest.entries.append(entry)

    def _add_hardlink(self, name: str, target: str, st: os.stat_result) -> None:
        entry = self._base_entry(name, "hardlink", st)
        entry.link_target = target
        info = self._tarinfo(entry, tarfile.LNKTYPE)
        info.linkname = target
        self._tar.addfile(info)
        self.manifest.entries.append(entry)

    def _add_volume_file(self, name: str, path: Path, st: os.stat_result) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME)
        except PermissionError:  # O_NOATIME needs ownership unless root
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            self.manifest.skipped.append({"path": name, "reason": "vanished"})
            return False
        try:
            st = os.fstat(fd)  # the file we opened, not the one we listed
            entry = self._base_entry(name, "file", st)
            self._add_from_fd(entry, fd, st)
        finally:
            os.close(fd)
        return True

    # -- plumbing --------------------------------------------------------------

    def _add_from_fd(self, entry: ManifestEntry, fd: int, st: os.stat_result) -> None:
        entry.size = st.st_size
        entry.sparse = st.st_blocks * 512 < st.st_size
        reader = FixedSizeFileReader(fd, st.st_size, entry.sparse)
        info = self._tarinfo(entry, tarfile.REGTYPE)
        self._tar.addfile(info, reader)  # type: ignore[arg-type]
        reader.finish()
        entry.sha256 = reader.sha256.hexdigest()
        entry.changed_during_read = reader.changed
        self.manifest.entries.append(entry)
        self._count(entry.size)

    def _add_regular(self, entry: ManifestEntry, data: BinaryIO) -> None:
        raw = data.read()
        entry.sha256 = hashlib.sha256(raw).hexdigest()
        self._tar.addfile(self._tarinfo(entry, tarfile.REGTYPE), io.BytesIO(raw))
        self.manifest.entries.append(entry)
        self._count(entry.size)

    def _tarinfo(self, entry: ManifestEntry, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(entry.path)
        info.type = kind
        info.size = entry.size if kind == tarfile.REGTYPE else 0
        info.mode = entry.mode
        info.uid, info.gid = entry.uid, entry.gid
        info.uname = info.gname = ""  # numeric owners only
        # Sub-second mtimes go into the PAX header as a decimal number.
        info.mtime = entry.mtime_ns // 1_000_000_000
        if entry.mtime_ns % 1_000_000_000:
            # Exact nanoseconds in the PAX header (a float would round them);
            # a float mtime makes tarfile emit the header, ours takes priority.
            # Sign and magnitude: -1.5 s is "-1.500000000", not floor's "-2.5...".
            whole, fraction = divmod(abs(entry.mtime_ns), 1_000_000_000)
            sign = "-" if entry.mtime_ns < 0 else ""
            info.mtime = entry.mtime_ns / 1e9
            info.pax_headers = {"mtime": f"{sign}{whole}.{fraction:09d}"}
        return info

    def _count(self, size: int) -> None:
        self.bytes_read += size
        now = time.monotonic()
        if now - self._last_report >= 0.5:
            self._last_report = now
            self._progress(Progress("archiving", self.bytes_read, self._bytes_total))

    def abandon(self) -> None:
        """Give up after a failure: write nothing more (no tar end blocks),
        so a broken output is not padded to look complete."""
        stream = self._tar.fileobj
        self._tar.closed = True
        if stream is not None:
            stream.closed = True  # stops tarfile's __del__ from flushing its buffer

    def close(self) -> None:
        """Write manifest.json last and end the tar; the output stays open."""
        raw = self.manifest.to_bytes()
        info = tarfile.TarInfo(MANIFEST_JSON)
        info.size = len(raw)
        info.mode = 0o644
        info.mtime = int(time.time())
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(raw))
        self._tar.close()
        self._progress(Progress("archiving", self.bytes_read, self._bytes_total))
