"""Ending an operation on SIGTERM or SIGINT the way any failure ends it.

`stop_on(SIGTERM, SIGINT)` installs, for the length of an operation,
handlers that raise Terminated in the main thread, once: a second signal
while the operation winds down (resuming containers, rolling back, marking
the run failed) is logged and ignored, so it cannot cut that short. SIGKILL
is left for whoever will not wait (the run is then recovered as a dead one).

`deferred()` marks a step that must not be cut in the middle: pausing or
stopping the containers (one paused but not yet recorded would be left
paused), bringing them back, a rollback, the decision to keep restored
data. A signal arriving inside is held and raised when the outermost
deferred block ends normally; if the block ends with an exception, that one
already ends the operation and the signal is not raised again.

Signals reach the main thread only, so in any other thread both are no-ops.
The Celery worker's shutdown hook calls terminate() itself when the
operation runs in the worker's own main thread (solo pool), where Celery
keeps its signal handlers: stop_on() with no signal only marks that an
operation is running.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from engine.errors import Terminated

logger = logging.getLogger(__name__)


@dataclass
class _State:
    active: int = 0  # nesting of stop_on() blocks in this process
    deferring: int = 0  # nesting of deferred() blocks
    held: int | None = None  # a signal received inside deferred(), raised at its end
    stopping: bool = False  # the operation is already ending: later signals are ignored


_state = _State()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def active() -> bool:
    """Is an operation that a signal should end running in this process?"""
    return _state.active > 0


def terminate(signum: int) -> None:
    """End the running operation because of SIGNUM: raise Terminated here
    (the main thread), or hold it until the deferred step ends."""
    name = signal.Signals(signum).name
    if _state.stopping:
        logger.warning("%s received: already stopping, the operation is winding down", name)
        return
    _state.stopping = True
    if _state.deferring:
        _state.held = signum
        logger.warning("%s received: stopping once the current step is done", name)
        return
    logger.warning("%s received: stopping the operation", name)
    raise Terminated(signum)


def _handle(signum: int, _frame: FrameType | None) -> None:
    terminate(signum)


@contextmanager
def stop_on(*signums: int) -> Iterator[None]:
    """An operation runs in this block: SIGNUMS raise Terminated in it
    (the previous handlers are put back at its end)."""
    if not _in_main_thread():
        yield
        return
    outermost = _state.active == 0
    if outermost:
        _state.stopping, _state.held = False, None
    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        signal.signal(signum, _handle)
    _state.active += 1
    try:
        yield
    finally:
        _state.active -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if outermost:
            _state.stopping, _state.held = False, None


@contextmanager
def deferred() -> Iterator[None]:
    """A step a signal must not cut in the middle (see the module's doc)."""
    if not _in_main_thread():
        yield
        return
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    # Only reached when the block ended normally.
    if not _state.deferring and _state.held is not None:
        signum, _state.held = _state.held, None
        raise Terminated(signum)


def take_held() -> Terminated | None:
    """The signal a deferred block is holding, taken: it will not be raised
    at the block's end. For a caller that ends the operation its own way
    (a restore that has already succeeded skips its tidying)."""
    if _state.held is None:
        return None
    signum, _state.held = _state.held, None
    return Terminated(signum)
