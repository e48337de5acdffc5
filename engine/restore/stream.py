"""The SHA-256 of the stored file itself, computed as a restore reads it
(StoredPass) and compared with the snapshot's record (member data is hashed
by engine.restore.file_hashes). The tar stream is read by
engine.archive.read_ahead.Source."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, BinaryIO

from engine.archive.read_ahead import ReadAheadReader
from engine.compression import Compression, open_decompressor
from engine.secret import Secret

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
