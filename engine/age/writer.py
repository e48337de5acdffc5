"""AgeWriter: push-style age v1 encryption of a stream (see stream.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from engine.age import keys
from engine.age.header import Stanza, encode_header
from engine.age.stream import CHUNK_SIZE, NONCE_SIZE, chunk_nonce, payload_aead
from engine.secret import Secret


class WritableSink(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


def _build_stanzas(
    file_key: bytes, recipients: Sequence[str], passphrase: Secret | None, work_factor: int
) -> list[Stanza]:
    if isinstance(recipients, str | bytes):
        # A lone string would be iterated character by character.
        raise ValueError("recipients must be a list of age1... strings, not a single string")
    if recipients and passphrase is not None:
        raise ValueError(
            "give either recipients or a passphrase, not both: the age format requires "
            "a passphrase (scrypt) stanza to be the only one"
        )
    if passphrase is not None:
        if not isinstance(passphrase, Secret):
            raise TypeError("passphrase must be an engine.secret.Secret")
        if not passphrase:
            raise ValueError("the passphrase is empty")
        return [keys.scrypt_wrap(file_key, passphrase, work_factor)]
    if not recipients:
        raise ValueError("no recipients and no passphrase: nothing to encrypt to")
    public_keys = [
        keys.parse_recipient(r, f"recipient #{i} of {len(recipients)}")
        for i, r in enumerate(recipients, 1)
    ]
    return [keys.x25519_wrap(file_key, pk) for pk in public_keys]


class AgeWriter:
    """Push-style encryptor: bytes written here come out age-encrypted on
    `out`. `close()` seals the final chunk and leaves `out` open.

    Deliberately not an io.IOBase: IOBase closes itself when garbage
    collected, which would seal an abandoned stream and make a partial
    archive look complete."""

    def __init__(
        self,
        out: WritableSink,
        *,
        recipients: Sequence[str] = (),
        passphrase: Secret | None = None,
        scrypt_work_factor: int = 18,
    ) -> None:
        file_key = os.urandom(keys.FILE_KEY_SIZE)
        stanzas = _build_stanzas(file_key, recipients, passphrase, scrypt_work_factor)
        nonce = os.urandom(NONCE_SIZE)
        self._out = out
        self._aead = payload_aead(file_key, nonce)
        self._buf = bytearray(CHUNK_SIZE)
        self._view = memoryview(self._buf)
        self._fill = 0
        self._counter = 0
        self._closed = False
        self._emit(encode_header(stanzas, file_key) + nonce)

    @property
    def closed(self) -> bool:
        return self._closed

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed AgeWriter (closed, aborted, or a write failed)")
        view = memoryview(data).cast("B")
        total = len(view)
        pos = 0
        while pos < total:
            if self._fill == CHUNK_SIZE:
                # More data follows, so the buffered full chunk is not the last.
                self._seal(self._view, last=False)
                self._fill = 0
            if self._fill == 0 and total - pos > CHUNK_SIZE:
                # Whole chunks with more data behind them: seal straight from
                # the caller's buffer, skipping the copy.
                self._seal(view[pos : pos + CHUNK_SIZE], last=False)
                pos += CHUNK_SIZE
                continue
            take = min(CHUNK_SIZE - self._fill, total - pos)
            self._buf[self._fill : self._fill + take] = view[pos : pos + take]
            self._fill += take
            pos += take
        return total

    def flush(self) -> None:
        """Flush `out`. The buffered partial chunk stays buffered: sealing it
        early would have to mark it final."""
        flush = getattr(self._out, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Seal the final chunk. Idempotent; does not close `out`."""
        if self._closed:
            return
        self._closed = True
        self._seal(self._view[: self._fill], last=True)
        self._fill = 0

    def abort(self) -> None:
        """Stop without the final chunk: readers will report the output as truncated."""
        self._closed = True
        self._fill = 0

    def __enter__(self) -> AgeWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _seal(self, chunk: memoryview, last: bool) -> None:
        sealed = self._aead.encrypt(chunk_nonce(self._counter, last), chunk, None)
        self._counter += 1
        self._emit(sealed)

    def _emit(self, data: bytes) -> None:
        try:
            # Raw files and sockets may take only part of a write.
            written = self._out.write(data)
            while written is not None and written < len(data):
                data = data[written:]
                written = self._out.write(data)
        except BaseException:
            # What reached `out` is now unknown: never seal it as complete.
            self.abort()
            raise
