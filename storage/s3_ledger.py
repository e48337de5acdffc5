"""Where a resumable S3 upload records what the server has acknowledged.

storage/ has no Django, so the record keeping is a protocol: the upload loop
calls start() once, record() after every acknowledged part and forget() when
the object is complete (or the upload aborted). A new process finds the
upload again with pending(key) and skips the parts listed by parts().
MemoryLedger and JsonFileLedger serve storage-level tests and single hosts;
a Django-model ledger (one row per part) implements the same protocol.

All calls come from the one thread that owns the upload loop."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class UploadState:
    """A multipart upload in progress: enough to resume it from another process."""

    key: str  # the storage key (without the location's prefix)
    upload_id: str
    size: int  # of the whole file
    part_size: int
    sha256: str  # of the whole file: a different file never resumes this upload
    marker: str  # the partial marker object (see storage.s3)
    started: float  # time.time() at creation


@dataclass(frozen=True)
class PartRecord:
    part_number: int
    size: int
    checksum: str  # as sent: "md5:<hex>" or "crc32:<base64>" (storage.s3_parts)
    etag: str


class PartLedger(Protocol):
    def start(self, state: UploadState) -> None: ...

    def pending(self, key: str) -> UploadState | None: ...

    def record(
        self, upload_id: str, part_number: int, size: int, checksum: str, etag: str
    ) -> None: ...

    def parts(self, upload_id: str) -> dict[int, PartRecord]: ...

    def forget(self, upload_id: str) -> None: ...


class MemoryLedger:
    def __init__(self) -> None:
        self._uploads: dict[str, UploadState] = {}
        self._parts: dict[str, dict[int, PartRecord]] = {}
        self._lock = threading.Lock()

    def start(self, state: UploadState) -> None:
        with self._lock:
            self._uploads[state.upload_id] = state
            self._parts[state.upload_id] = {}

    def pending(self, key: str) -> UploadState | None:
        with self._lock:
            found = [s for s in self._uploads.values() if s.key == key]
        return max(found, key=lambda s: s.started) if found else None

    def record(self, upload_id: str, part_number: int, size: int, checksum: str, etag: str) -> None:
        with self._lock:
            self._parts.setdefault(upload_id, {})[part_number] = PartRecord(
                part_number, size, checksum, etag
            )

    def parts(self, upload_id: str) -> dict[int, PartRecord]:
        with self._lock:
            return dict(self._parts.get(upload_id, {}))

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._uploads.pop(upload_id, None)
            self._parts.pop(upload_id, None)


class JsonFileLedger(MemoryLedger):
    """A MemoryLedger saved to one JSON file after every change, atomically
    (temp file, fsync, rename): a kill -9 leaves the previous or the new
    version, and a part is only listed once the server acknowledged it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.exists():
            data = json.loads(self.path.read_text())
            for item in data.get("uploads", []):
                state = UploadState(**item)
                self._uploads[state.upload_id] = state
            for upload_id, parts in data.get("parts", {}).items():
                self._parts[upload_id] = {int(n): PartRecord(**p) for n, p in parts.items()}

    def start(self, state: UploadState) -> None:
        super().start(state)
        self._save()

    def record(self, upload_id: str, part_number: int, size: int, checksum: str, etag: str) -> None:
        super().record(upload_id, part_number, size, checksum, etag)
        self._save()

    def forget(self, upload_id: str) -> None:
        super().forget(upload_id)
        self._save()

    def _save(self) -> None:
        with self._lock:
            data = {
                "uploads": [asdict(s) for s in self._uploads.values()],
                "parts": {
                    u: {str(n): asdict(p) for n, p in parts.items()}
                    for u, parts in self._parts.items()
                },
            }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
