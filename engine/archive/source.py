"""Open a stored archive as a plain tar stream: decrypt, then decompress."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

from engine.compression import Compression, open_decompressor
from engine.secret import Secret
from storage.base import Storage


@contextmanager
def open_tar_source(
    storage: Storage,
    key: str,
    *,
    compression: Compression,
    encrypted: bool,
    identities: Sequence[str] = (),
    passphrase: Secret | None = None,
) -> Iterator[BinaryIO]:
    with storage.open(key) as raw:
        source: Any = raw
        if encrypted:
            from engine.age import AgeReader

            source = AgeReader(raw, identities=identities, passphrase=passphrase)
        yield open_decompressor(source, compression)
