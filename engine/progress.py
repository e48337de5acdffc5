"""Progress reporting: the engine calls a callback, so the same code serves a
Celery task (updates the run row and task state), a management command (a
progress bar) and a benchmark (nothing).

The engine calls its callback from whatever thread does the work: the main
thread, an exec's stdin feeder, a spooler. Such a call must never fail, stop
or slow the data path, so the callbacks handed to the engine by the services
are ProgressRelay.report: it only records the latest report. The relay's own
thread (the one owner) then publishes it to the sinks that write rows, task
state or a terminal, and an error there is logged once and dropped."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

logger = logging.getLogger(__name__)
MIN_GAP_FRACTION = 0.1  # of the interval: the shortest time between two publications
PHASE_ENDS_KEPT = 16  # unpublished phase-ending reports kept for the next publication


@dataclass(frozen=True)
class Progress:
    phase: str  # e.g. "locking", "dumping", "archiving", "verifying"
    bytes_done: int = 0
    bytes_total: int | None = None  # None when unknown
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default callback: report nothing."""


class ProgressRelay:
    """The one owner of a run's progress reports.

    `report` (hand it to the engine as its callback) may be called from any
    thread: it stores the latest report under a lock and returns; it cannot
    raise. The relay's thread hands the latest report to every sink at most
    every INTERVAL seconds, at once when the phase changes, and once more when
    the relay stops, so the last word (e.g. "stored") always gets through.
    A phase's last report is never overwritten by the next phase's first: it
    is kept and published before it (a verify's "read 64 MiB" would otherwise
    vanish behind "verified" when both come within one gap).
    `ticks` are called on the same thread every TICK_SECONDS whatever the
    reports (heartbeats: a silent phase must not look like a dead worker).
    `on_exit` runs last on the relay's thread (closing its DB connection).

    An exception from a sink, tick or on_exit is logged once per (callable,
    exception type) and otherwise dropped: reporting never breaks a backup."""

    def __init__(
        self,
        sinks: Sequence[ProgressCallback],
        *,
        interval: float = 1.0,
        ticks: Sequence[Callable[[], None]] = (),
        tick_seconds: float = 15.0,
        on_exit: Callable[[], None] | None = None,
        name: str = "progress-relay",
    ) -> None:
        self._sinks = list(sinks)
        self._ticks = list(ticks)
        self._interval = interval
        self._tick_seconds = tick_seconds
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._latest: Progress | None = None
        self._pending = False  # a report not yet published
        # Last reports of phases that ended before being published; bounded so
        # a flurry of phases cannot grow it (the oldest go first).
        self._phase_ends: deque[Progress] = deque(maxlen=PHASE_ENDS_KEPT)
        self._phase = ""
        self._stopped = threading.Event()
        self._logged: set[tuple[int, type[BaseException]]] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> ProgressRelay:
        self._thread.start()
        return self

    def __enter__(self) -> ProgressRelay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def report(self, progress: Progress) -> None:
        """The engine's callback: record PROGRESS, never raise, never block on I/O."""
        with self._lock:
            phase_changed = progress.phase != self._phase
            if phase_changed and self._pending and self._latest is not None:
                self._phase_ends.append(self._latest)
            self._latest = progress
            self._pending = True
            self._phase = progress.phase
        if phase_changed:
            self._wake.set()

    __call__ = report

    def stop(self, timeout: float = 30.0) -> None:
        """Publish what is pending, run on_exit, and end the thread. Bounded:
        a sink stuck on a dead database does not hold the operation's end."""
        if not self._thread.is_alive():
            return
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("progress relay %s did not stop in %.0fs", self._thread.name, timeout)

    def _run(self) -> None:
        next_tick = time.monotonic()  # the first heartbeat right at the start
        try:
            while True:
                now = time.monotonic()
                if now >= next_tick:
                    for tick in self._ticks:
                        self._call(tick)
                    next_tick = now + self._tick_seconds
                self._publish()
                if self._stopped.is_set():
                    return
                # A phase change wakes us early, but a flurry of phases must not
                # turn into a flurry of writes: at least MIN_GAP between two.
                self._stopped.wait(self._interval * MIN_GAP_FRACTION)
                self._wake.wait(max(0.0, min(self._interval, next_tick - time.monotonic())))
                self._wake.clear()
        finally:
            if self._on_exit is not None:
                self._call(self._on_exit)

    def _publish(self) -> None:
        with self._lock:
            progress, pending = self._latest, self._pending
            self._pending = False
            ended = list(self._phase_ends)
            self._phase_ends.clear()
        if progress is None or not pending:
            return
        for report in [*ended, progress]:
            for sink in self._sinks:
                self._call(sink, report)

    def _call(self, target: Callable[..., None], *args: Progress) -> None:
        try:
            target(*args)
        except Exception as exc:
            key = (id(target), type(exc))
            if key not in self._logged:
                self._logged.add(key)
                # The type and text only: a traceback's locals could hold data.
                logger.warning(
                    "progress reporting failed (%s: %s); further such errors are dropped",
                    type(exc).__name__,
                    str(exc)[:200],
                )
