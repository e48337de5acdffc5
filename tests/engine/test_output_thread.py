"""The backup's output stage on its own thread: order kept, errors surface."""

from __future__ import annotations

import threading

import pytest

from engine.errors import StorageFull
from engine.output_thread import OutputThread


class Collect:
    def __init__(self, fail_after: int | None = None) -> None:
        self.pieces: list[bytes] = []
        self.fail_after = fail_after
        self.writer_threads: set[str] = set()

    def write(self, data: bytes) -> int:
        self.writer_threads.add(threading.current_thread().name)
        if self.fail_after is not None and len(self.pieces) >= self.fail_after:
            raise StorageFull("disk full")
        self.pieces.append(data)
        return len(data)


def test_pieces_arrive_in_order_from_another_thread() -> None:
    sink = Collect()
    output = OutputThread(sink)
    for i in range(500):
        output.write(b"%d," % i)
    output.write(memoryview(b"last"))  # copied: the caller may reuse its buffer
    output.close()
    assert b"".join(sink.pieces) == b"".join(b"%d," % i for i in range(500)) + b"last"
    assert sink.writer_threads == {"archive-output"}


def test_a_storage_error_reaches_the_producer() -> None:
    output = OutputThread(Collect(fail_after=3))
    with pytest.raises(StorageFull):
        for _ in range(10_000):  # some write after the failure raises it
            output.write(b"x" * 1000)
    with pytest.raises(StorageFull):
        output.close()


def test_an_error_on_the_last_piece_is_raised_by_close() -> None:
    output = OutputThread(Collect(fail_after=0))
    output.write(b"only")
    with pytest.raises(StorageFull):
        output.close()


def test_abandon_drops_queued_pieces_and_returns() -> None:
    gate = threading.Event()

    class Slow(Collect):
        def write(self, data: bytes) -> int:
            gate.wait(5)
            return super().write(data)

    sink = Slow()
    output = OutputThread(sink)
    for _ in range(20):
        output.write(b"x")
    gate.set()
    output.abandon()
    assert len(sink.pieces) < 20  # what was still queued was not written


def test_big_pieces_are_queued_in_bounded_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """gzip hands out pieces of MiBs: they travel in slices, so at most
    QUEUE_DEPTH x MAX_PIECE bytes wait in the queue."""
    from engine import output_thread

    monkeypatch.setattr(output_thread, "MAX_PIECE", 100)
    sink = Collect()
    output = OutputThread(sink)
    output.write(b"a" * 250 + b"b" * 100)
    output.close()
    assert [len(p) for p in sink.pieces] == [100, 100, 100, 50]
    assert b"".join(sink.pieces) == b"a" * 250 + b"b" * 100
