"""SHA-256s computed as a restore reads: of member data (Hasher), compared
with manifest.json once the stream has ended, and of the stored file itself
(StoredPass), compared with the snapshot's record. The tar stream is read by
engine.archive.read_ahead.Source."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Sequence
from typing import Any, BinaryIO

from engine.archive.read_ahead import ReadAheadReader
from engine.compression import Compression, open_decompressor
from engine.secret import Secret

LARGE_FILE = 1 << 20  # files this large are hashed on the hasher thread


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


# -- the stored archive, read once ---------------------------------------------

STORED_CHUNK = 1 << 20
STORED_READ_AHEAD = 8
DECRYPTED_CHUNK = 1 << 20
DECRYPTED_READ_AHEAD = 8


class StoredPass:
    """One read of a stored archive: TAR is the decrypted, decompressed tar
    stream, while the stored bytes under it are hashed as they are read (on
    the read-ahead thread, beside decompression), so restore checks the
    archive's SHA-256 and decryption in the same pass that extracts it,
    exactly as deep verification's quick half does."""

    def __init__(
        self,
        raw: BinaryIO,
        *,
        compression: Compression,
        encrypted: bool,
        identities: Sequence[str] = (),
        passphrase: Secret | None = None,
    ) -> None:
        self._digest = hashlib.sha256()
        self._stored = ReadAheadReader(
            raw, STORED_CHUNK, STORED_READ_AHEAD, on_chunk=self._digest.update,
            name="restore-stored",
        )  # fmt: skip
        self._decrypted: ReadAheadReader | None = None
        try:
            source: Any = self._stored
            if encrypted:
                from engine.age import AgeReader

                # Its own thread too (ChaCha20 releases the GIL), as in verify.
                decryptor = AgeReader(self._stored, identities=identities, passphrase=passphrase)
                self._decrypted = ReadAheadReader(
                    decryptor, DECRYPTED_CHUNK, DECRYPTED_READ_AHEAD, name="restore-decrypt"
                )
                source = self._decrypted
            self.tar: BinaryIO = open_decompressor(source, compression)
        except BaseException:
            self.close()
            raise

    def finish(self) -> tuple[str, int]:
        """Read what the tar reader left (the decryptor's last chunk, which
        authenticates the end; trailing bytes) and return the SHA-256 and
        size of the whole stored file."""
        if self._decrypted is not None:
            while self._decrypted.read(DECRYPTED_CHUNK):
                pass
        while self._stored.read(STORED_CHUNK):
            pass
        return self._digest.hexdigest(), self._stored.bytes_read

    def close(self) -> None:
        if self._decrypted is not None:
            self._decrypted.close()
        self._stored.close()


def stored_mismatch(sha256: str, expected: str, sidecar: str | None) -> list[str]:
    """Why the stored file's SHA-256 is not the one recorded (the words of
    deep verification), or nothing."""
    errors = []
    if sha256 != expected:
        errors.append("SHA-256 of the stored file does not match the snapshot record")
    if sidecar is not None and sidecar != sha256:
        errors.append("SHA-256 of the stored file does not match its .sha256 sidecar")
    return errors
