"""The database dumps of a stored archive, extracted for a drill: one more
pass over the archive (decrypt, decompress, the same member checks as deep
verify) that keeps the dump members in DUMP_DIR."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.age import AgeReader
from engine.archive.reader import ArchiveReport, scan_archive
from engine.compression import Compression, open_decompressor
from engine.errors import ArchiveError
from engine.progress import ProgressCallback, no_progress
from engine.secret import Secret
from storage.base import Storage


def extract_dumps(
    storage: Storage,
    key: str,
    dump_dir: Path,
    *,
    compression: Compression,
    encrypted: bool,
    identities: Sequence[str] = (),
    passphrase: Secret | None = None,
    progress: ProgressCallback = no_progress,
) -> ArchiveReport:
    """The archive's report, its dumps copied into DUMP_DIR (report.dump_files).
    Raises ArchiveError when the archive cannot be read. PROGRESS is called
    on this thread every half second of reading (a deadline's guard raises there)."""
    with storage.open(key) as raw:
        source = AgeReader(raw, identities=identities, passphrase=passphrase) if encrypted else raw
        try:
            return scan_archive(open_decompressor(source, compression), progress, dump_dir)
        except ArchiveError:
            raise
        except Exception as exc:  # zstd/gzip raise their own types on corrupt data
            raise ArchiveError(f"archive cannot be decompressed: {exc}") from None
