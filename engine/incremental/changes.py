"""Change detection of an incremental backup against its parent's index.

A regular file is unchanged when its size, mtime (ns), ctime (ns), inode,
mode and owner all match the parent's entry: then its bytes are not read
again, and its index line is carried over (with the archive that holds its
bytes). Anything else is written again. ctime is what makes this safe: it
moves on every write, chmod, chown, rename into place and link count change,
and no program can set it back, so a file rewritten with its old size and
mtime restored (rsync -t, tar -x) is still seen as changed.

Directories, symlinks and hardlinks are always written (a header each, no
data): the newest archive of a chain holds every one of them, exact. So is
a regular file with more than one name (its bytes too): a hardlink member
must point to an earlier member of its own archive. Paths
of the parent that this backup no longer has, or has as another type, are
the manifest's `deleted` list: remove them before extracting this archive.

Memory: one small tuple and one index line per parent entry (about 300
bytes per file: 50,000 files take some 15 MB); a file over 1 MiB's line
also holds its block digests (engine.incremental.delta: 1.3 MB per GiB).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

# (type, size, mtime_ns, ctime_ns, ino, mode, uid, gid), as the index keeps them.
Identity = tuple[str, int, int | None, int | None, int | None, int, int, int]


def _identity(entry: dict[str, Any]) -> Identity:
    return (
        entry["type"], entry["size"], entry.get("mtime_ns"), entry.get("ctime_ns"),
        entry.get("ino"), entry["mode"], entry["uid"], entry["gid"],
    )  # fmt: skip


class ParentState:
    """The parent's volume entries, consumed as the new backup walks. Each
    call to visit() takes the entry of one path; what is left at the end was
    deleted."""

    def __init__(self, parent_backup_id: str, entries: Iterable[dict[str, Any]]) -> None:
        self.parent_backup_id = parent_backup_id
        self._entries: dict[str, tuple[Identity, dict[str, Any]]] = {
            entry["path"]: (_identity(entry), entry) for entry in entries
        }
        self._replaced: list[str] = []  # same path, another type; or not stored after all
        self._last: str | None = None  # the last path visit() found in the parent
        # The parent's line of the file visit() last said to write again: a
        # delta's base (engine.incremental.delta), None if there is none.
        self.last_file: dict[str, Any] | None = None
        self.carried_files = 0
        self.carried_bytes = 0

    def visit(self, name: str, kind: str, st: os.stat_result) -> dict[str, Any] | None:
        """NAME is in the new backup as KIND (ST: its lstat). Returns the
        parent's index line when NAME is a regular file whose bytes need not
        be written again, else None (write it)."""
        found = self._entries.pop(name, None)
        self._last = None if found is None else name
        self.last_file = None
        if found is None:
            return None
        identity, entry = found
        if identity[0] != kind:
            self._replaced.append(name)
            return None
        if kind == "file":
            self.last_file = entry
        if kind != "file" or entry.get("changed_during_read") or st.st_nlink > 1:
            # A copy read while it changed may be torn: never carried over.
            # A file of several names is written again (see above).
            return None
        now: Identity = (
            "file", st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
        )  # fmt: skip
        if now != identity or "stored_in" not in entry:
            return None
        self.carried_files += 1
        self.carried_bytes += st.st_size
        return entry

    def gone(self, name: str) -> None:
        """NAME, just visited, was not stored after all (it vanished or
        changed type while the backup read it): it is deleted too."""
        if self._last == name:
            self._replaced.append(name)

    def deleted(self) -> list[str]:
        """Paths to remove before extracting the new archive: gone since the
        parent, or there as another type. Call after the walk."""
        return sorted({*self._entries, *self._replaced})
