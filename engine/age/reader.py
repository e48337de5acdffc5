"""AgeReader: pull-style, file-like age v1 decryption (see stream.py)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag

from engine.age import keys
from engine.age.header import ReadableSource, read_header, verify_header_mac
from engine.age.stream import ENCRYPTED_CHUNK_SIZE, NONCE_SIZE, chunk_nonce, payload_aead
from engine.errors import DecryptionError
from engine.secret import Secret


class AgeReader(io.BufferedIOBase):
    """Pull-style decryptor, file-like: `read(n)` returns n bytes unless the
    end is reached (io.BufferedIOBase semantics), so `tarfile` stream mode
    and decompressors can sit on top. The header (key, MAC) is checked on
    construction; each chunk when it is reached. `close()` leaves `src` open.

    Plaintext returned before an error was authenticated chunk by chunk, but
    the whole stream is only known complete once `read` returned b"" without
    raising."""

    def __init__(
        self,
        src: ReadableSource,
        *,
        identities: Sequence[str] = (),
        passphrase: Secret | None = None,
        max_scrypt_work_factor: int = 22,
    ) -> None:
        super().__init__()
        if isinstance(identities, str | bytes):
            raise ValueError("identities must be a list of AGE-SECRET-KEY-1... strings")
        if passphrase is not None and not isinstance(passphrase, Secret):
            raise TypeError("passphrase must be an engine.secret.Secret")
        private_keys = [
            keys.parse_identity(s, f"identity #{i} of {len(identities)}")
            for i, s in enumerate(identities, 1)
        ]
        if not private_keys and passphrase is None:
            raise ValueError("no identities and no passphrase: nothing to decrypt with")
        self._src = src
        header, self._pending = read_header(src)
        file_key = keys.unwrap_file_key(
            header.stanzas, private_keys, passphrase, max_scrypt_work_factor
        )
        verify_header_mac(header, file_key)
        nonce = self._read_exact(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise DecryptionError("the encrypted file is truncated (payload nonce missing)")
        self._aead = payload_aead(file_key, nonce)
        self._counter = 0
        self._plain = b""
        self._pos = 0
        self._finished = False
        self._error: DecryptionError | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        if size is None or size < 0:
            parts = [self._take(len(self._plain) - self._pos)]
            while (chunk := self._next_chunk()) is not None:
                parts.append(chunk)
            return b"".join(parts)
        parts = []
        while size > 0:
            if self._pos == len(self._plain):
                chunk = self._next_chunk()
                if chunk is None:
                    break
                self._plain, self._pos = chunk, 0
            part = self._take(size)
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        """At most one chunk's worth, without waiting for more."""
        self._check_open()
        if self._pos == len(self._plain):
            chunk = self._next_chunk()
            if chunk is None:
                return b""
            self._plain, self._pos = chunk, 0
        return self._take(len(self._plain) - self._pos if size < 0 else size)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._plain = b""
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("read from a closed AgeReader")

    def _take(self, size: int) -> bytes:
        end = min(self._pos + size, len(self._plain))
        if self._pos == 0 and end == len(self._plain):
            part = self._plain  # the whole chunk: no copy
        else:
            part = self._plain[self._pos : end]
        self._pos = end
        return part

    def _read_exact(self, size: int) -> bytes:
        """`size` bytes, fewer only at end of input (sources may return short reads)."""
        parts = []
        if self._pending:
            parts.append(self._pending[:size])
            self._pending = self._pending[size:]
            size -= len(parts[0])
        while size > 0:
            block = self._src.read(size)
            if not block:
                break
            parts.append(block)
            size -= len(block)
        return b"".join(parts)

    def _next_chunk(self) -> bytes | None:
        """The next authenticated plaintext chunk, or None after the final one.
        A failure is final: later reads raise it again instead of going on
        with the chunks after a bad one."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_chunk_unchecked()
        except DecryptionError as exc:
            self._error = exc
            raise

    def _next_chunk_unchecked(self) -> bytes | None:
        if self._finished:
            return None
        sealed = self._read_exact(ENCRYPTED_CHUNK_SIZE)
        index = self._counter
        if not sealed:
            raise DecryptionError("the encrypted file is truncated: it ends before the final chunk")
        if len(sealed) < ENCRYPTED_CHUNK_SIZE:
            # A short chunk can only be the final one (and the input is at its end).
            plain = self._open(sealed, last=True)
        else:
            # A full-size chunk may be the final one too: try both flags, as age does.
            try:
                plain = self._aead.decrypt(chunk_nonce(index, False), sealed, None)
            except InvalidTag:
                plain = self._open(sealed, last=True)
            else:
                self._counter += 1
                return plain
            if self._read_exact(1):
                raise DecryptionError("unexpected data after the end of the encrypted file")
        if not plain and index > 0:
            raise DecryptionError("invalid age file: empty final chunk")
        self._finished = True
        return plain if plain else None

    def _open(self, sealed: bytes, last: bool) -> bytes:
        try:
            plain = self._aead.decrypt(chunk_nonce(self._counter, last), sealed, None)
        except InvalidTag:
            raise DecryptionError(
                f"payload chunk {self._counter} failed authentication: the file is "
                "truncated, corrupted or was modified"
            ) from None
        self._counter += 1
        return plain
