"""Block deltas in a chain restore (engine.incremental.delta: the format).

While the chain's archives are read, newest first, each delta member of a
file no later archive wrote whole or deleted is kept in a private spool
(DeltaSpool, one per archive: several archives may hold a delta of the same
file); its SHA-256 is checked against its manifest entry like any member's.
Once the oldest archive gave the file's last whole version, apply_pending
patches it with each delta in chain order (oldest first), checks that each
delta was made on the version before it, that the result matches the
newest manifest's size and SHA-256, and gives the file that entry's mode,
owner and mtime. The first delta's base is checked against the SHA-256 the
extractor computed while it wrote that whole version (and compared with its
manifest), not by reading the file again: for a chain of database files
that read was the size of the files (~1 GB in bench_incremental).
Everything happens in the staging dirs: a failure raises ArchiveError and
the caller discards them, the app untouched.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.archive.read_ahead import Source
from engine.archive.tar_reader import Member
from engine.errors import ArchiveError, EngineError
from engine.incremental.apply_deltas import DeltaError, apply_delta, read_header
from engine.restore.checks import Placement
from engine.restore.file_hashes import FileHashes
from engine.restore.safe_fs import Tree, write_file


class DeltaSpool:
    """The delta members of one archive, written under ROOT (a new private
    dir) as <volume>/<path>, never through a symlink (safe_fs.Tree)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(mode=0o700)
        self.root = root
        self.tree = Tree(root)
        self.files: dict[str, Path] = {}  # volume member -> its delta here

    def write(
        self, member: Member, spot: Placement, name: str, source: Source, hasher: FileHashes
    ) -> None:
        parts = (spot.root, *spot.parts)
        try:
            self.tree.trim()
            parent = self.tree.make_dirs(parts[:-1])
            write_file(parent, parts[-1], member, name, source, hasher, owner=False)
        except OSError as exc:
            raise EngineError(f"cannot spool delta {name!r}: {exc.strerror}") from exc
        self.files["volumes/" + "/".join(parts)] = self.root.joinpath(*parts)

    def close(self) -> None:
        self.tree.close()


@dataclass
class PendingDeltas:
    """Files of the final tree that are deltas: path -> their delta files,
    newest first, and the newest manifest entry (the final size, SHA-256
    and metadata); once an older archive wrote one whole, that version's
    SHA-256 as the extractor computed it while writing (raw)."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    bases: dict[str, bytes] = field(default_factory=dict)

    def add(self, path: str, delta: Path, entry: dict[str, Any]) -> None:
        self.files.setdefault(path, []).append(delta)
        self.final.setdefault(path, entry)

    def based(self, path: str, sha256: bytes) -> None:
        """PATH, pending, was written whole with these bytes' SHA-256, which
        its archive's manifest confirmed (the extractor's comparison)."""
        if path in self.files:
            self.bases.setdefault(path, sha256)


def apply_pending(pending: PendingDeltas, trees: Mapping[str, Tree], decided: set[str]) -> None:
    """Patch each pending file in the staging TREES (volume -> Tree);
    DECIDED: the paths some archive wrote whole (a pending one must be)."""
    for path, deltas in sorted(pending.files.items()):
        if path not in decided:
            raise ArchiveError(f"{path!r}: the chain holds deltas of it but no whole version")
        _, volume, *rest = path.split("/")
        tree = trees[volume]
        try:
            tree.trim()
            parent = tree.dir_fd(tuple(rest[:-1]))
            fd = os.open(rest[-1], os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError as exc:
            raise ArchiveError(f"{path!r}: no staged file to apply its delta to") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                # Never a file of several names: patching one would change the others.
                raise ArchiveError(f"{path!r}: a delta applies to a file of one name only")
            base = pending.bases.get(path)
            _patch(path, fd, list(reversed(deltas)), pending.final[path], base)
        except OSError as exc:
            raise EngineError(f"cannot apply the delta of {path!r}: {exc.strerror}") from exc
        finally:
            os.close(fd)


def _patch(
    path: str, fd: int, deltas: list[Path], entry: dict[str, Any], base: bytes | None
) -> None:
    """The deltas, oldest first, onto the file open on FD (BASE: the SHA-256
    of its staged version, None if unknown); then the entry's metadata."""
    # Each delta was made on the version the one before it made: checked on
    # the headers, so the file is read for its SHA-256 once (the result)
    # when its base's is known, twice when not; never per delta.
    headers = []
    for delta in deltas:
        with open(delta, "rb") as stream:
            try:
                headers.append(read_header(stream))
            except DeltaError as exc:
                raise ArchiveError(f"{path!r}: {exc}") from None
    for older, newer in itertools.pairwise(headers):
        if (older[2], older[5]) != (newer[1], newer[4]):
            raise ArchiveError(f"{path!r}: a delta of the chain was not made on the one before")
    if (headers[-1][2], headers[-1][5].hex()) != (entry["size"], entry.get("sha256")):
        raise ArchiveError(f"{path!r}: its delta does not make the manifest's version")
    if base is not None and headers[0][4] != base:
        raise ArchiveError(f"{path!r}: the file is not the version its first delta was made on")
    for number, delta in enumerate(deltas):
        with open(delta, "rb") as stream:
            try:
                # The base is checked by the first delta (unless its SHA-256
                # is known), the result by the last (each one's header names
                # the next one's base). apply_delta checks the base's size.
                apply_delta(stream, fd, check_base=number == 0 and base is None,
                            check_result=number == len(deltas) - 1)  # fmt: skip
            except DeltaError as exc:
                raise ArchiveError(f"{path!r}: {exc}") from None
    os.fchown(fd, entry["uid"], entry["gid"])
    os.fchmod(fd, entry["mode"])  # after chown, which clears setuid bits
    os.utime(fd, ns=(entry["mtime_ns"], entry["mtime_ns"]))
