"""The staging pass's shorter GIL slices are put back as they were, whatever
happens inside, and with restores that overlap (engine/restore/gil_slices.py)."""

from __future__ import annotations

import sys
import threading

import pytest

from engine.restore.gil_slices import GIL_SLICE_SECONDS, short_gil_slices


def test_the_interval_is_short_inside_and_put_back_after_a_failure() -> None:
    before = sys.getswitchinterval()
    assert before != GIL_SLICE_SECONDS
    with pytest.raises(RuntimeError), short_gil_slices():
        assert sys.getswitchinterval() == pytest.approx(GIL_SLICE_SECONDS)
        raise RuntimeError("the extraction failed")
    assert sys.getswitchinterval() == before


def test_overlapping_restores_leave_the_interval_as_it_was() -> None:
    before = sys.getswitchinterval()
    first_in, second_out = threading.Event(), threading.Event()
    seen: list[float] = []

    def second() -> None:
        first_in.wait(10)
        with short_gil_slices():
            pass  # ends while the first is still inside
        second_out.set()

    thread = threading.Thread(target=second)
    thread.start()
    with short_gil_slices():
        first_in.set()
        second_out.wait(10)
        seen.append(sys.getswitchinterval())  # the second's exit kept it short
    thread.join(10)
    assert seen == [pytest.approx(GIL_SLICE_SECONDS)]
    assert sys.getswitchinterval() == before
