"""Signals end an operation through Terminated: once, never in the middle
of a deferred step. Real signals, sent to this process (pytest runs tests in
the main thread, where Python delivers them)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from engine import termination
from engine.errors import Terminated


def _signal_self(signum: int = signal.SIGTERM) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.5)  # the handler runs at the next bytecode; this never finishes


def test_a_signal_raises_terminated_once_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen = []
    with pytest.raises(Terminated) as caught, termination.stop_on(signal.SIGTERM, signal.SIGINT):
        assert termination.active()
        try:
            _signal_self(signal.SIGINT)
        except Terminated as exc:
            seen.append(exc)
            # Winding down: a second signal must not cut the cleanup short.
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            seen.append("cleanup finished")
            raise
    assert str(caught.value) == "stopped by SIGINT" and caught.value.signum == signal.SIGINT
    assert seen[1] == "cleanup finished"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert not termination.active()


def test_a_deferred_step_finishes_then_the_signal_is_raised() -> None:
    steps = []
    with pytest.raises(Terminated), termination.stop_on(signal.SIGTERM):
        with termination.deferred():
            _signal_self()
            steps.append("step finished")
        steps.append("never")
    assert steps == ["step finished"]


def test_a_deferred_step_that_fails_raises_its_own_error_not_the_signal() -> None:
    with (
        pytest.raises(OSError, match="disk"),
        termination.stop_on(signal.SIGTERM),
        termination.deferred(),
    ):
        _signal_self()
        raise OSError("disk")


def test_take_held_gives_the_signal_to_a_caller_that_ends_its_own_way() -> None:
    with termination.stop_on(signal.SIGTERM):
        with termination.deferred():
            _signal_self()
            held = termination.take_held()
        assert isinstance(held, Terminated) and held.signum == signal.SIGTERM
        _signal_self()  # already stopping: ignored
    assert termination.take_held() is None


def test_a_new_operation_starts_afresh() -> None:
    with pytest.raises(Terminated), termination.stop_on(signal.SIGTERM):
        _signal_self()
    with pytest.raises(Terminated), termination.stop_on(signal.SIGTERM):
        _signal_self()


def test_other_threads_are_left_alone() -> None:
    results = []

    def worker() -> None:
        with termination.stop_on(signal.SIGTERM), termination.deferred():
            results.append(termination.active())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert results == [False]


def test_terminated_pickles() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(Terminated(signal.SIGTERM)))  # noqa: S301 (our own bytes)
    assert copy.signum == signal.SIGTERM and str(copy) == "stopped by SIGTERM"
