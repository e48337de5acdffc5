"""Where the writer keeps manifest entries until manifest.json is written.

An entry is final only once the writer thread has hashed its file's data,
which happens a few buffers after the entry was made. EntryLog holds entries
until then, in archive order, and then either keeps them (in memory: small
archives, tests that inspect Manifest.entries) or appends them to an
anonymous temp file (spill mode, the backup path): memory then stays flat
however many files a volume has, and manifest.json is streamed from disk.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.archive.layout import split_volume_member
from engine.archive.manifest import ENTRY_SEPARATOR, Manifest, ManifestEntry

SPILL_CHUNK = 1024 * 1024  # manifest.json is read back from disk in pieces this big
CHANGED_NAMES_MAX = 100  # names kept for the result; the count goes on


@dataclass
class ArchiveSummary:
    """Counts kept while writing, so nobody has to walk the entries again."""

    volumes: dict[str, dict[str, int]] = field(default_factory=dict)  # files, bytes
    entries: int = 0
    # Members that changed while the backup read them: entries flagged
    # changed_during_read, and members skipped for changing type mid-walk.
    changed_during_read: int = 0
    changed_files: list[str] = field(default_factory=list)  # the first CHANGED_NAMES_MAX

    def add(self, entry: ManifestEntry) -> None:
        self.entries += 1
        if entry.changed_during_read:
            self.note_changed(entry.path)
        if entry.type in ("file", "delta"):  # a delta: the file it makes (engine.incremental.delta)
            volume = split_volume_member(entry.path)
            if volume is not None:
                counts = self.volumes.setdefault(volume[0], {"files": 0, "bytes": 0})
                counts["files"] += 1
                counts["bytes"] += entry.size

    def note_changed(self, member: str) -> None:
        self.changed_during_read += 1
        if len(self.changed_files) < CHANGED_NAMES_MAX:
            self.changed_files.append(member)


class EntryLog:
    """Entries in archive order; see the module docstring."""

    def __init__(
        self,
        manifest: Manifest,
        spill_dir: Path | None = None,
        on_final: Callable[[ManifestEntry], None] | None = None,
    ) -> None:
        """ON_FINAL gets each entry once final (its digest known), in order."""
        self.manifest = manifest
        self._on_final = on_final
        self.summary = ArchiveSummary()
        # (entry, hasher or None, the pipe item after which its digest is final)
        self._pending: deque[tuple[ManifestEntry, Any, int]] = deque()
        self._spill: IO[bytes] | None = None
        self._spilled = 0
        if spill_dir is not None:
            # Anonymous: nothing to clean up if the process dies. Closed by close().
            self._spill = tempfile.TemporaryFile(dir=spill_dir, prefix="manifest-")  # noqa: SIM115

    def add(self, entry: ManifestEntry, hasher: Any, ready_after: int) -> None:
        """ENTRY's data is hashed by HASHER once pipe item READY_AFTER is done."""
        self.summary.add(entry)
        if self._spill is None:
            self.manifest.entries.append(entry)  # digest filled in by retire()
        self._pending.append((entry, hasher, ready_after))

    def retire(self, completed: int) -> None:
        """Finish the entries whose data the pipe has hashed (items up to COMPLETED)."""
        pending = self._pending
        lines: list[bytes] = []
        while pending and pending[0][2] <= completed:
            entry, hasher, _ = pending.popleft()
            if hasher is not None:
                entry.sha256 = hasher.hexdigest()
            if self._on_final is not None:
                self._on_final(entry)
            if self._spill is not None:
                lines.append(entry.encode())
        if lines and self._spill is not None:
            joined = ENTRY_SEPARATOR.join(lines)
            if self._spilled:
                joined = ENTRY_SEPARATOR + joined
            self._spill.write(joined)
            self._spilled += len(joined)

    def manifest_json(self) -> tuple[int, Iterator[bytes]]:
        """(size, pieces) of manifest.json; call after the last retire()."""
        if self._pending:
            raise RuntimeError("manifest entries still waiting for their digests")
        if self._spill is None:
            raw = self.manifest.to_bytes()
            return len(raw), iter((raw,))
        head, tail = self.manifest.head(), self.manifest.tail()
        pieces = self._spilled_pieces(self._spill, head, tail)
        return len(head) + self._spilled + len(tail), pieces

    def _spilled_pieces(self, spill: IO[bytes], head: bytes, tail: bytes) -> Iterator[bytes]:
        yield head
        spill.flush()
        spill.seek(0)
        left = self._spilled
        while left > 0:
            piece = spill.read(min(SPILL_CHUNK, left))
            if not piece:
                raise OSError("manifest spill file is shorter than what was written")
            left -= len(piece)
            yield piece
        yield tail

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
