"""Reading an S3 object as a stream that survives dropped connections.

A restore or verify reads archives of many GB straight from S3: the stream
keeps one ranged GET open from the current offset and, when the connection
drops or stalls, re-issues the GET from where it stopped (If-Match on the
ETag, so a concurrent overwrite is an error rather than a mix of versions).
Nothing is copied to disk."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from typing import Any

from engine.errors import StorageError
from storage.retry import backoff_delay
from storage.s3_config import S3Config, error_code, is_transient, s3_error

log = logging.getLogger(__name__)
_BUFFER = 1024 * 1024


class S3RangeReader(io.RawIOBase):
    def __init__(
        self, client: Any, config: S3Config, key: str, object_key: str, size: int, etag: str
    ) -> None:
        super().__init__()
        self._client = client
        self._config = config
        self._key = key
        self._object_key = object_key
        self._size = size
        self._etag = etag
        self._pos = 0
        self._body: Any = None
        self.reconnects = 0  # how many times a GET was re-issued (tests, logs)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError("negative seek position")
        if position != self._pos:
            self._drop()
            self._pos = position
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read of a closed S3 stream")
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        failures = 0
        while True:
            try:
                if self._body is None:
                    self._open_range()
                data = self._body.read(want)
                if not data:
                    # The server ended the body early: treat like a dropped connection.
                    raise ConnectionError("the response ended before the range did")
            except Exception as exc:
                self._drop()
                if isinstance(exc, StorageError) or not is_transient(exc):
                    if isinstance(exc, StorageError):
                        raise
                    raise s3_error(self._config, exc, f"reading {self._key}", self._key) from exc
                failures += 1
                if failures >= self._config.part_attempts:
                    raise s3_error(self._config, exc, f"reading {self._key}", self._key) from exc
                log.warning(
                    "%s: reading %s at offset %d: %s, re-issuing the GET",
                    self._config.where,
                    self._key,
                    self._pos,
                    type(exc).__name__,
                )
                time.sleep(backoff_delay(failures - 1, base=0.2))
                continue
            count = len(data)
            memoryview(buffer)[:count] = data
            self._pos += count
            return count

    def _open_range(self) -> None:
        self.reconnects += 1 if self._pos else 0
        try:
            response = self._client.get_object(
                Bucket=self._config.bucket,
                Key=self._object_key,
                Range=f"bytes={self._pos}-",
                IfMatch=self._etag,
            )
        except Exception as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                raise StorageError(
                    f"{self._config.where}: {self._key} was replaced while it was being read"
                ) from exc
            raise
        self._body = response["Body"]

    def _drop(self) -> None:
        if self._body is not None:
            # A dead connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()


def open_stream(
    client: Any, config: S3Config, key: str, object_key: str, size: int, etag: str
) -> io.BufferedReader:
    raw = S3RangeReader(client, config, key, object_key, size, etag)
    return io.BufferedReader(raw, buffer_size=_BUFFER)
