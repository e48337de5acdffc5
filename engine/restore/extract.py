"""Safe, faithful extraction of an archive's volumes into staging directories.

The archive is read once, front to back. Every member is checked (checks.py)
before anything is written for it, and everything is written relative to
directory fds opened one component at a time with O_NOFOLLOW, files created
with O_EXCL: nothing is ever written through a symlink, whether an earlier
member made it or it was already on disk. A member's parent must be a
directory an earlier member created, so pre-existing entries are never reused.

manifest.json comes last, so SHA-256s are computed while writing and compared
once the stream gets there, entry by entry as manifest.json is read (never
the whole document in memory); any difference raises ArchiveError and the
caller discards the staging dirs. Directory owners, modes and mtimes are applied only
then, deepest first (writing into a directory changes its mtime).

The tar parser and read-ahead reader are shared with deep verification
(engine.archive.tar_reader, read_ahead); the hasher is in file_hashes.py, the
directory-fd writes in safe_fs.py; this module runs the extraction and
keeps its bookkeeping.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from engine.archive.layout import VOLUMES_DIR
from engine.archive.manifest import Manifest, ManifestEntry
from engine.archive.manifest_stream import ManifestStream
from engine.archive.read_ahead import Source
from engine.archive.tar_reader import Member, TarReader
from engine.errors import ArchiveError, EngineError, brief
from engine.incremental.delta import volume_path
from engine.progress import Progress, ProgressCallback, no_progress
from engine.restore.checks import (
    Comparison,
    MemberChecks,
    Placement,
    Seen,
    compare_manifest,
    manifest_entries,
    manifest_head,
    packed_kind,
    split_name,
)
from engine.restore.deltas import DeltaSpool
from engine.restore.file_hashes import FileHashes
from engine.restore.safe_fs import Tree, write_file

logger = logging.getLogger(__name__)

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
    manifest: Manifest  # its head: the entries are compared as they are read, not kept
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
    on_spooled: Spooled | None = None,
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
    ON_SPOOLED(member name, path) is called as soon as a dump or config file
    is written whole under SPOOL_DIR (not yet checked against the manifest:
    what it starts must not touch the app, see engine.restore.shadow_loads).
    """
    extractor = _Extractor(targets, spool_dir, skip_other_members, progress, bytes_total)
    extractor.on_spooled = on_spooled
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


# (member name, its file under the spool dir): a spooled member is written.
Spooled = Callable[[str, Path], None]

# (member name, kind) -> True: a volume member read past, not written (a
# chain restore's older archives: engine.restore.chain).
SkipMember = Callable[[str, str], bool]


class _MemberData:
    """The SIZE bytes of one member's data in SOURCE, as a forward-only file
    (what ManifestStream reads); b"" at its end or the stream's."""

    def __init__(self, source: Source, size: int) -> None:
        self._source = source
        self._left = size

    def read(self, n: int) -> bytes:
        data = self._source.read(min(n, self._left))
        self._left -= len(data)
        return data


class _Extractor:
    def __init__(
        self,
        targets: Mapping[str, Path],
        spool_dir: Path | None,
        skip_other: bool,
        progress: ProgressCallback,
        bytes_total: int | None,
        skip_member: SkipMember | None = None,
        deltas: DeltaSpool | None = None,
    ) -> None:
        self.skip_member = skip_member
        self.deltas = deltas  # a chain restore's: where delta members go (else read past)
        self.dir_mtimes: dict[str, int] = {}
        self.trees: dict[str, Tree] = {}
        self.spool: Tree | None = None
        self.seen: dict[str, bytes] = {}  # Seen.pack()ed
        self.backup: dict[str, Any] | None = None
        self.manifest: Manifest | None = None  # its head: the entries are compared as read
        self.comparison: Comparison | None = None
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
        self.on_spooled: Spooled | None = None
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
        self.hasher = FileHashes()
        # The member checks deep verification runs too: one function, so what
        # verify calls valid, this accepts.
        self.checks = MemberChecks(
            self.trees.keys(), spooling=spool_dir is not None, skip_other=skip_other,
            earlier_kind=self._earlier_kind,
        )  # fmt: skip

    def _earlier_kind(self, name: str) -> str | None:
        earlier = self.seen.get(name)
        return None if earlier is None else packed_kind(earlier)

    def close(self) -> None:
        self.hasher.close()
        self._close_trees()

    def _close_trees(self) -> None:
        for tree in [*self.trees.values(), *([self.spool] if self.spool else [])]:
            tree.close()

    # -- one member ------------------------------------------------------------

    def member(self, member: Member, source: Source) -> None:
        name, kind = member.name, member.kind
        if name in self.seen:
            raise ArchiveError(f"duplicate member {name!r}")
        checked = self.checks.check(member)  # raises for anything hostile
        spot, linkname = checked.spot, checked.linkname
        written = spot.area != "skip"
        if spot.area in ("backup", "manifest"):
            self._json_member(member, spot, name, source)
        elif spot.area == "volume" and self.skip_member and self.skip_member(name, kind):
            self.skipped += 1
            written = False
        elif spot.area == "volume":
            self._volume_member(member, spot, name, linkname, source)
        elif spot.area == "spool":
            self._spool_member(member, spot.parts, name, source)
        elif (
            spot.area == "delta"
            and self.deltas is not None
            and not (self.skip_member and self.skip_member(volume_path(name), "file"))
        ):
            self.deltas.write(member, spot, name, source, self.hasher)
        elif spot.area == "delta":
            self.skipped += 1
            written = False
        else:
            self.skipped += 1
        if spot.area != "manifest":
            seen = Seen(kind, member.size, member.mode, member.uid, member.gid, member.mtime_ns,
                        linkname, written)  # fmt: skip
            self.seen[name] = seen.pack()
        self.bytes_done += member.size
        if time.monotonic() - self.last_report >= 0.5:
            self.last_report = time.monotonic()
            self.progress(Progress("restoring", self.bytes_done, self.bytes_total, name))

    def _json_member(self, member: Member, spot: Placement, name: str, source: Source) -> None:
        if spot.area == "manifest":
            self._compare(member, source)
            return
        raw = source.read(member.size)  # at most MAX_JSON: checked
        if len(raw) != member.size:
            raise ArchiveError(f"archive truncated inside {name}")
        self.backup = self.checks.accept_backup_json(raw)
        self.hasher.known(name, hashlib.sha256(raw).digest())
        listed = self.backup.get("volumes")
        missing = sorted(set(self.trees) - self.checks.archived_volumes) if listed else []
        if missing:
            raise ArchiveError(f"the archive has no volume {missing[0]!r}")

    def _volume_member(
        self, member: Member, spot: Placement, name: str, linkname: str, source: Source
    ) -> None:
        tree, parts, stats = self.trees[spot.root], spot.parts, self.stats[spot.root]
        kind, mtime = member.kind, member.mtime_ns
        if not parts:  # the volume root (a directory: checked): the staging dir itself
            self.dir_meta.append((tree, parts, member, name))
            return
        # Its parent is an earlier directory member (checked), so tree.dirs has it.
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
                if write_file(parent, leaf, member, name, source, self.hasher, owner=True):
                    self.holey.append(name)
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
        spool, spool_dir = self.spool, self.spool_dir
        if spool is None or spool_dir is None:  # place() only spools with a spool dir
            raise ArchiveError(f"member {name!r} has nowhere to go")
        try:
            spool.trim()
            parent = spool.make_dirs(parts[:-1])
            holey = write_file(parent, parts[-1], member, name, source, self.hasher, owner=False)
        except OSError as exc:
            raise _fs_error(name, exc) from exc
        self.report_spooled[name] = spool_dir.joinpath(*parts)
        if holey:  # fixed only at the end (_fix_files): not handed on before
            self.holey.append(name)
        elif self.on_spooled is not None:
            try:
                self.on_spooled(name, self.report_spooled[name])
            except Exception as exc:  # what it starts is optional; the extraction goes on
                logger.error("after spooling %s: %s", name, brief(exc))

    def _compare(self, member: Member, source: Source) -> None:
        """manifest.json, the last member (checked): every file was handed to
        the hasher, so each entry is compared as it is read."""
        digests = self.hasher.finish()
        stream = ManifestStream(_MemberData(source, member.size))  # type: ignore[arg-type]
        holey = set(self.holey)  # _fix_files needs their entries
        self.comparison = compare_manifest(manifest_entries(stream), self.seen, digests, holey)
        self.manifest = manifest_head(stream.fields)

    # -- the end ---------------------------------------------------------------

    def finish(self, defer_dirs: bool = False) -> ExtractReport:
        """Check the manifest, fix files; then the directories' metadata,
        unless DEFER_DIRS (apply_dirs() later: more files go in first)."""
        self.hasher.finish()
        if self.comparison is None or self.manifest is None or self.backup is None:
            raise ArchiveError("manifest.json is missing (archive truncated?)")
        errors, mtimes = list(self.comparison.errors), self.comparison.mtimes
        errors += self.checks.empty_volumes()  # restore's words, verify's too
        if self.deltas is None:  # not a chain restore: a delta would leave its file out
            held = [path for path in self.comparison.deltas if path.split("/")[1] in self.trees]
            errors += [f"{path!r} is a block delta: only its chain restores it" for path in held]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise ArchiveError(f"archive does not match its manifest: {errors[0]}{more}")
        self._fix_files(mtimes)
        self.dir_mtimes = mtimes
        if not defer_dirs:
            self.apply_dirs()
        self.progress(Progress("restoring", self.bytes_done, self.bytes_total))
        return ExtractReport(
            backup=self.backup, manifest=self.manifest, volumes=self.stats,
            spooled=self.report_spooled, skipped_members=self.skipped,
        )  # fmt: skip

    def apply_dirs(self) -> None:
        # Deepest first: a directory's metadata is final once its children are.
        for tree, parts, member, name in sorted(
            self.dir_meta, key=lambda meta: len(meta[1]), reverse=True
        ):
            mtime = self.dir_mtimes.get(name, member.mtime_ns)
            try:
                tree.trim()
                fd = tree.dir_fd(parts)
                os.fchown(fd, member.uid, member.gid)
                os.fchmod(fd, member.mode)
                os.utime(fd, ns=(mtime, mtime))
            except OSError as exc:
                raise _fs_error(name, exc) from exc

    def _fix_files(self, mtimes: dict[str, int]) -> None:
        """Where the manifest knows better than the tar header: exact mtimes,
        and files that had zero runs but no holes get their blocks back."""
        if not mtimes and not self.holey:
            return
        by_path = self.comparison.kept if self.comparison else {}
        fill = {name for name in self.holey if not by_path[name].get("sparse")}
        # Only what this extraction wrote (a chain's older archives skip some).
        written = {name for name in mtimes if Seen.unpack(self.seen[name]).written}
        for name in sorted(fill | written):
            parts, entry = name.split("/"), ManifestEntry(**by_path[name])
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
