"""The S3 read stream (storage.s3_reader) against both real servers: ranged
GETs of read_chunk_size, several in flight at once, handed out in order; a
small read costs one GET; seeks anywhere read the right bytes; an object
replaced while it is read is an error, not a mix of two versions; closing
in the middle stops the fetches."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import pytest

from engine.errors import StorageError
from storage.s3 import S3Storage
from storage.s3_config import MIB
from tests.s3_servers import S3Server
from tests.storage.conftest import s3_storage_on

KEY = "app_1/backup_20260105_103000_3fa2c1.tar.zst"
CHUNK = 256 * 1024
SIZE = 10 * CHUNK + 1234  # eleven ranges, the last a short one


class GetSpy:
    """The real client, with its GetObject calls recorded (and, on request,
    held at a barrier until enough of them are in flight at once: a stream
    that fetched one range at a time would never get there)."""

    def __init__(self, client: Any, hold: tuple[int, ...] = (), parties: int = 1) -> None:
        self._client = client
        self.ranges: list[str] = []
        self.threads: set[str] = set()
        self._hold = hold
        self._barrier = threading.Barrier(parties, timeout=10)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_object(self, **params: Any) -> Any:
        with self._lock:
            self.ranges.append(params.get("Range", ""))
            number = len(self.ranges)
            self.threads.add(threading.current_thread().name)
        if number in self._hold:
            self._barrier.wait()  # BrokenBarrierError: they were not in flight together
        return self._client.get_object(**params)


def _stored(server: S3Server, data: bytes, concurrency: int = 4) -> S3Storage:
    storage = s3_storage_on(server, read_chunk_size=CHUNK, concurrency=concurrency)
    with storage.open_writer(KEY) as writer:
        writer.write(data)
    return storage


def _spied(storage: S3Storage, **spy: Any) -> tuple[S3Storage, GetSpy]:
    client = GetSpy(storage.client, **spy)
    return S3Storage(storage.config, client=client), client


def test_a_whole_read_fetches_ranges_in_parallel_and_in_order(s3_server: S3Server) -> None:
    data = os.urandom(SIZE)
    # Nothing ahead of the first range; then the window doubles with each
    # range consumed: one ahead (GET 3), two (GETs 4 and 5, which must be in
    # flight together), then four.
    storage, spy = _spied(_stored(s3_server, data), hold=(4, 5), parties=2)
    with storage.open(KEY) as stream:
        read = stream.read()
    assert hashlib.sha256(read).hexdigest() == hashlib.sha256(data).hexdigest()
    expected = [f"bytes={start}-{min(start + CHUNK, SIZE) - 1}" for start in range(0, SIZE, CHUNK)]
    assert sorted(spy.ranges) == sorted(expected)  # each range once, bounded
    assert len(spy.threads) > 1 and all(t.startswith("s3-read") for t in spy.threads)


def test_a_small_read_costs_one_get(s3_server: S3Server) -> None:
    data = os.urandom(SIZE)
    storage, spy = _spied(_stored(s3_server, data))
    with storage.open(KEY) as stream:
        assert stream.read(4096) == data[:4096]
    assert spy.ranges == [f"bytes=0-{CHUNK - 1}"]


def test_seeks_anywhere_read_the_right_bytes(s3_server: S3Server) -> None:
    data = os.urandom(SIZE)
    storage = _stored(s3_server, data)
    with storage.open(KEY) as stream:
        middle = 5 * CHUNK + CHUNK // 2
        stream.seek(middle)
        assert stream.read(CHUNK) == data[middle : middle + CHUNK]
        stream.seek(10)
        assert stream.read(100) == data[10:110]
        stream.seek(-1000, os.SEEK_END)
        assert stream.read() == data[-1000:]
        stream.seek(0)
        assert stream.read() == data
        assert stream.read(10) == b""


def test_an_object_replaced_while_it_is_read_is_an_error(s3_server: S3Server) -> None:
    data = os.urandom(SIZE)
    storage = _stored(s3_server, data, concurrency=1)
    with storage.open(KEY) as stream:
        assert stream.read(CHUNK) == data[:CHUNK]
        with storage.open_writer(KEY) as writer:
            writer.write(os.urandom(SIZE))
        with pytest.raises(StorageError, match="was replaced while it was being read"):
            stream.read()


def test_closing_in_the_middle_stops_reading(s3_server: S3Server) -> None:
    storage = _stored(s3_server, os.urandom(4 * MIB), concurrency=4)
    stream = storage.open(KEY)
    stream.read(3 * CHUNK)
    stream.close()
    with pytest.raises(ValueError):
        stream.read(1)
    for thread in threading.enumerate():
        if thread.name.startswith("s3-read"):
            thread.join(timeout=10)  # each stops within one piece of its range
            assert not thread.is_alive()
