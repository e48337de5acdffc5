"""Writes the archive tar stream (format v1) into any writable stream.

Nothing is seeked, so the output can flow straight into a compressor, an
encryptor and storage with bounded memory. Owners are stored numerically only
(no user/group names), so `tar -x` as root restores the same uid/gid inside
the volume whatever users the host has. Headers are PAX, built by
engine.archive.tar_headers (the bytes tarfile would write, much faster);
small members are batched into one large write, large files are read with
os.preadv into one reused buffer that goes to the compressor as is.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from engine.archive.entry_log import ArchiveSummary, EntryLog
from engine.archive.file_reader import FixedSizeFileReader
from engine.archive.layout import BACKUP_JSON, MANIFEST_JSON, split_volume_member, volume_member
from engine.archive.manifest import Manifest, ManifestEntry
from engine.archive.tar_headers import (
    BLOCK,
    DIRTYPE,
    LNKTYPE,
    RECORD,
    REGTYPE,
    SYMTYPE,
    member_header,
    padding,
)  # fmt: skip
from engine.archive.walk import (
    CHANGED,
    DIR,
    VANISHED,
    MemberChanged,
    open_member_file,
    read_member_link,
    walk_tree,
)  # fmt: skip
from engine.archive.writer_thread import CHUNK_SIZE, Writable, WriterThread
from engine.incremental.changes import ParentState
from engine.incremental.delta import (
    APPLY_SCRIPT,
    BLOCK_SIZE,
    DELTA_MIN_SIZE,
    BlockDigests,
    apply_script,
    build_delta,
    can_delta,
    delta_member,
)  # fmt: skip
from engine.incremental.index import IndexWriter
from engine.progress import Progress, ProgressCallback, no_progress

BATCH_SIZE = 1024 * 1024  # headers and small files are gathered up to this size
WHOLE_RATIO = 0.9  # a delta holding this share of a file's blocks: the file goes whole


class ArchiveWriter:
    """Usage: add_backup_json(), add_file() for dumps, add_volume() for each
    volume, add_file() for config, then close() writes manifest.json and the
    tar end (any order of volumes and files works: this is the service's)."""

    def __init__(
        self,
        out: Writable,
        manifest: Manifest,
        progress: ProgressCallback = no_progress,
        bytes_total: int | None = None,
        spill_dir: Path | None = None,
        index: IndexWriter | None = None,
        parent: ParentState | None = None,
    ) -> None:
        """SPILL_DIR: keep finished manifest entries in a temp file there
        instead of in manifest.entries (flat memory for big volumes).
        INDEX: gets every volume entry (engine.incremental.index). PARENT:
        an incremental: volume files unchanged since it are not written, their
        index lines are carried over (engine.incremental.changes)."""
        self._pipe = WriterThread(out)
        # Headers and small files are gathered in a pooled buffer, read in place.
        self._batch = self._pipe.buffer()
        self._fill = 0
        self._batch_hashes: list[tuple[Any, int, int]] = []
        self._index = index
        self._parent = parent
        self._spill_dir = spill_dir
        # Block digests of large volume files, for their index lines (deltas).
        self._blocks: dict[str, BlockDigests | dict[str, Any]] = {}
        on_final = None if index is None else self._index_entry
        self._log = EntryLog(manifest, spill_dir, on_final)
        self._offset = 0  # bytes written so far, for the final record padding
        self._closed = False
        self.manifest = manifest
        self._progress = progress
        self._bytes_total = bytes_total
        self.bytes_read = 0
        # What block deltas spared: a delta'd file counts whole in bytes_read
        # (progress, bytes_full) but only its changed blocks were written.
        self.bytes_spared_by_deltas = 0
        self._last_report = 0.0

    @property
    def summary(self) -> ArchiveSummary:
        return self._log.summary

    def _record(self, entry: ManifestEntry, hasher: Any = None) -> None:
        # Call once ENTRY's last byte is emitted. If the batch holds bytes, it
        # is the next item the pipe gets (close() flushes it at the latest):
        # once it is done, every byte of ENTRY has been hashed. If the batch is
        # empty, ENTRY's last bytes went out in the item already submitted (a
        # large file's last chunk with no padding after it, or a batch that
        # _emit flushed on reaching BATCH_SIZE): waiting for the next item
        # would wait for one that may never come, if ENTRY is the last member.
        self._log.add(entry, hasher, self._pipe.submitted + (1 if self._fill else 0))

    def _index_entry(self, entry: ManifestEntry) -> None:
        if self._index is None or split_volume_member(entry.path) is None:
            return
        data = entry.to_json()
        data["stored_in"] = self.manifest.backup_id
        if entry.type == "delta":  # the index knows files; deltas are the archive's business
            data["type"] = "file"
        blocks = self._blocks.pop(entry.path, None)
        if blocks is not None:
            data.update(blocks.index_fields() if isinstance(blocks, BlockDigests) else blocks)
        self._index.add_raw(data)

    def _unchanged(self, name: str, kind: str, st: os.stat_result) -> bool:
        """Tell the parent NAME is here as KIND; True when it is a file
        unchanged since the parent (its index line is carried, nothing written)."""
        if self._parent is None:
            return False
        carried = self._parent.visit(name, kind, st)
        if carried is None:
            return False
        if self._index is not None:
            self._index.add_line(carried)
        return True

    # -- small members ---------------------------------------------------------

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600) -> ManifestEntry:
        entry = ManifestEntry(
            path=name, type="file", size=len(data), mode=mode, uid=0, gid=0,
            mtime_ns=time.time_ns(),
        )  # fmt: skip
        self._add_regular(entry, data)
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
        """Every entry under ROOT, depth first in name order, walked relative to
        directory fds (engine.archive.walk): nothing is followed, whatever the
        app swaps in meanwhile. Entries that vanish while we walk (live apps)
        are skipped; members that change type are skipped and noted as changed."""
        hardlinks: dict[tuple[int, int], str] = {}
        for kind, rel, parent, leaf, st in walk_tree(os.fspath(root)):
            name = volume_member(volume, rel)
            if kind == VANISHED:
                self.manifest.skipped.append({"path": name, "reason": "vanished"})
            elif kind == CHANGED or st is None:
                self._changed_type(name)
            elif kind == DIR:
                self._unchanged(name, "dir", st)
                self._add_dir(name, st)
            else:
                self._add_member(name, parent, leaf, st, hardlinks)

    def _add_member(
        self, name: str, parent: int, leaf: str, st: os.stat_result,
        hardlinks: dict[tuple[int, int], str],
    ) -> None:  # fmt: skip
        if stat.S_ISLNK(st.st_mode):
            self._unchanged(name, "symlink", st)
            self._add_symlink(name, parent, leaf, st)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in hardlinks:
                self._unchanged(name, "hardlink", st)
                self._add_hardlink(name, hardlinks[key], st)
                return
            if self._unchanged(name, "file", st):
                return  # its bytes are in an earlier archive of the chain
            opened = self._add_volume_file(name, parent, leaf, st)
            if opened is None and self._parent is not None:
                self._parent.gone(name)
            if opened is not None and opened.st_nlink > 1:
                hardlinks[(opened.st_dev, opened.st_ino)] = name
        else:
            # Sockets, FIFOs and devices cannot be restored safely: recorded, not stored.
            kind = {stat.S_IFSOCK: "socket", stat.S_IFIFO: "fifo"}.get(
                stat.S_IFMT(st.st_mode), "device"
            )
            self.manifest.skipped.append({"path": name, "reason": kind})

    def _changed_type(self, name: str) -> None:
        # Listed as one type, found as another when opened (a directory
        # swapped for a symlink, say): not followed, not stored, noted.
        self.manifest.skipped.append({"path": name, "reason": "changed type during the backup"})
        self._log.summary.note_changed(name)
        if self._parent is not None:
            self._parent.gone(name)

    def _base_entry(self, name: str, kind: str, st: os.stat_result) -> ManifestEntry:
        return ManifestEntry(
            path=name, type=kind, size=0, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid,
            gid=st.st_gid, mtime_ns=st.st_mtime_ns, dev=st.st_dev, ino=st.st_ino,
            ctime_ns=st.st_ctime_ns,
        )  # fmt: skip

    def _add_dir(self, name: str, st: os.stat_result) -> None:
        entry = self._base_entry(name, "dir", st)
        self._header(entry, DIRTYPE)
        self._record(entry)

    def _add_symlink(self, name: str, parent: int, leaf: str, st: os.stat_result) -> None:
        entry = self._base_entry(name, "symlink", st)
        try:
            entry.link_target = read_member_link(parent, leaf)
        except FileNotFoundError:
            self.manifest.skipped.append({"path": name, "reason": "vanished"})
            if self._parent is not None:
                self._parent.gone(name)
            return
        except MemberChanged:
            self._changed_type(name)
            return
        self._header(entry, SYMTYPE)
        self._record(entry)

    def _add_hardlink(self, name: str, target: str, st: os.stat_result) -> None:
        entry = self._base_entry(name, "hardlink", st)
        entry.link_target = target
        self._header(entry, LNKTYPE)
        self._record(entry)

    def _add_volume_file(
        self, name: str, parent: int, leaf: str, listed: os.stat_result
    ) -> os.stat_result | None:
        """Store LEAF of PARENT; the fstat of the file stored, None if none was."""
        try:
            fd, st = open_member_file(parent, leaf)
        except FileNotFoundError:
            self.manifest.skipped.append({"path": name, "reason": "vanished"})
            return None
        except MemberChanged:
            self._changed_type(name)
            return None
        try:
            # The file we opened, not the one we listed: another regular file
            # renamed over it is stored as it is, flagged as changed.
            entry = self._base_entry(name, "file", st)
            swapped = (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino)
            base = self._parent.last_file if self._parent is not None else None
            digests = None if swapped else can_delta(base, st)
            if digests is not None and base is not None:
                self._add_delta(entry, fd, st, base, digests)
            else:
                self._add_from_fd(entry, fd, st, changed=swapped, blocks=True)
        finally:
            os.close(fd)
        return st

    # -- plumbing --------------------------------------------------------------

    def _add_delta(
        self, entry: ManifestEntry, fd: int, st: os.stat_result, base: dict[str, Any],
        digests: bytes,
    ) -> None:  # fmt: skip
        """Store the volume file open on FD as a delta against BASE, the
        parent's index line with DIGESTS (engine.incremental.delta): member
        deltas/<volume>/<path> with the new version's mode, owner and mtime,
        then the path's manifest entry, type "delta", with its size and SHA-256."""
        delta = build_delta(fd, st, digests, base, self._spill_dir)
        if delta.records * BLOCK_SIZE >= WHOLE_RATIO * st.st_size:
            # Rewritten nearly all over (a log rotated in place, a VACUUM):
            # whole is as small, and a restore then needs no older version.
            delta.spool.close()
            self._add_from_fd(entry, fd, os.fstat(fd), blocks=True)
            return
        try:
            member = ManifestEntry(
                path=delta_member(entry.path), type="file", size=delta.size, mode=entry.mode,
                uid=entry.uid, gid=entry.gid, mtime_ns=entry.mtime_ns,
            )  # fmt: skip
            hasher = hashlib.sha256()
            self._header(member, REGTYPE)
            self._flush()
            pipe, first = self._pipe, True
            while True:
                chunk = pipe.buffer()
                n = 0
                if first:
                    n = len(delta.header)
                    chunk[:n] = delta.header
                    first = False
                n += delta.spool.readinto(chunk[n:])  # type: ignore[attr-defined]
                if not n:
                    pipe.recycle(chunk)
                    break
                pipe.put(chunk[:n], [(hasher, 0, n)], chunk)
                self._offset += n
            self._emit(padding(delta.size))
            self._record(member, hasher)
        finally:
            delta.spool.close()
        entry.type, entry.size, entry.sha256 = "delta", st.st_size, delta.sha256
        entry.changed_during_read = delta.changed
        self._blocks[entry.path] = delta.index_fields
        self._record(entry)
        self._count(st.st_size)
        self.bytes_spared_by_deltas += max(0, st.st_size - delta.size)

    def _add_from_fd(
        self, entry: ManifestEntry, fd: int, st: os.stat_result, changed: bool = False,
        blocks: bool = False,
    ) -> None:  # fmt: skip
        """Store the file open on FD, ST its fstat before the read. CHANGED: it is
        known to have changed already (flagged whatever the read finds).
        BLOCKS: a volume file: one over DELTA_MIN_SIZE gets block digests for
        its index line, so the next incremental can store it as a delta."""
        entry.size = size = st.st_size
        entry.sparse = st.st_blocks * 512 < size
        reader = FixedSizeFileReader(fd, size, entry.sparse, hashing=False, before=st)
        hasher = hashlib.sha256()
        self._header(entry, REGTYPE)
        if size <= BATCH_SIZE:  # small: joins the batch
            if self._fill + size > CHUNK_SIZE:
                self._flush()
            start = self._fill
            self._fill += reader.readinto(self._batch[start : start + size])
            self._batch_hashes.append((hasher, start, self._fill))
        else:  # large: read into pooled buffers that go to the compressor as they are
            self._flush()
            pipe = self._pipe
            block_digests = None
            if blocks and self._index is not None and size > DELTA_MIN_SIZE:
                # For the next incremental's delta (engine.incremental.delta).
                # Here, not on the writer's thread: that one hashes and feeds
                # the compressor, the busier of the two (a 1 GiB file, zstd:
                # ~460 MiB/s with the digests there, ~950 here, ~1,000 without).
                block_digests = self._blocks[entry.path] = BlockDigests()
            while True:
                chunk = pipe.buffer()
                n = reader.readinto(chunk)
                if not n:
                    pipe.recycle(chunk)
                    break
                if block_digests is not None:
                    block_digests.update(chunk[:n])
                pipe.put(chunk[:n], [(hasher, 0, n)], chunk)
                self._offset += n
        self._emit(padding(size))
        reader.finish()
        entry.changed_during_read = reader.changed or changed
        self._record(entry, hasher)
        self._count(size)

    def _add_regular(self, entry: ManifestEntry, data: bytes) -> None:
        entry.sha256 = hashlib.sha256(data).hexdigest()
        self._header(entry, REGTYPE)
        self._emit(data)
        self._emit(padding(len(data)))
        self._record(entry)
        self._count(entry.size)

    def _header(self, entry: ManifestEntry, kind: bytes) -> None:
        self._emit(
            member_header(
                entry.path, kind, entry.size if kind == REGTYPE else 0, entry.mode, entry.uid,
                entry.gid, entry.mtime_ns, entry.link_target or "",
            )
        )  # fmt: skip

    def _emit(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("archive output already closed")
        if self._fill + len(data) > CHUNK_SIZE:
            self._flush()
            if len(data) > CHUNK_SIZE:  # a large manifest.json
                self._pipe.put(data, [])
                self._offset += len(data)
                return
        self._batch[self._fill : self._fill + len(data)] = data
        self._fill += len(data)
        if self._fill >= BATCH_SIZE:
            self._flush()

    def _flush(self) -> None:
        if self._fill:
            self._pipe.put(self._batch[: self._fill], self._batch_hashes, self._batch)
            self._offset += self._fill
            self._batch, self._fill, self._batch_hashes = self._pipe.buffer(), 0, []
            self._log.retire(self._pipe.completed)

    def _count(self, size: int) -> None:
        self.bytes_read += size
        now = time.monotonic()
        if now - self._last_report >= 0.5:
            self._last_report = now
            self._progress(Progress("archiving", self.bytes_read, self._bytes_total))

    def abandon(self) -> None:
        """Give up after a failure: write nothing more (no tar end blocks),
        so a broken output is not padded to look complete."""
        self._closed = True
        self._fill = 0
        self._pipe.stop(discard=True)
        self._log.close()

    def __del__(self) -> None:
        # Dropped without close() or abandon(): end the writer thread.
        if not getattr(self, "_closed", True):
            self._pipe.stop(discard=True)

    def close(self) -> None:
        """Write manifest.json last and end the tar; the output stays open."""
        if self._closed:
            raise ValueError("archive output already closed")
        if self._parent is not None:  # an incremental: how to apply its deltas by hand
            script = apply_script()
            self.add_bytes(APPLY_SCRIPT, script, 0o755)
            self.bytes_read -= len(script)  # not what a full backup would hold (bytes_full)
        self._flush()
        self._pipe.drain()  # every file's digest is final
        self._log.retire(self._pipe.completed)
        size, pieces = self._log.manifest_json()
        self._emit(member_header(MANIFEST_JSON, REGTYPE, size, 0o644, 0, 0,
                                 int(time.time()) * 1_000_000_000))  # fmt: skip
        for piece in pieces:
            self._emit(piece)
        self._log.close()
        self._emit(padding(size))
        # Two zero blocks end the tar; then zeros up to a whole record, like tarfile.
        end = self._offset + self._fill + 2 * BLOCK
        self._emit(bytes(2 * BLOCK + (-end % RECORD)))
        self._flush()
        self._closed = True
        self._pipe.drain()
        self._pipe.stop()
        self._progress(Progress("archiving", self.bytes_read, self._bytes_total))
