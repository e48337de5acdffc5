"""A drill's time limit, enforced inside its steps as well as between them.

Two ways in, because the steps are of two kinds:

- reading the archive (deep verify, extracting the dumps) runs in this
  process and reports progress every half second: `guard()` wraps that
  callback so it raises DrillTimeout once the limit has passed;
- restoring a dump and counting rows run inside the sandbox container,
  where this process only waits on Docker: `watchdog()` kills the sandbox
  when the limit passes, which ends the exec this process waits on; the
  step then fails, and the caller reports the time limit instead.

DrillTimeout is a BaseException, like engine.errors.Terminated: the steps'
own `except Exception` (a deep verify reports a corrupt archive as a
finding instead of raising) must not turn "out of time" into a finding
about the archive."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.progress import Progress, ProgressCallback

logger = logging.getLogger(__name__)


class DrillTimeout(BaseException):
    """The drill's time limit passed; str() says during which step."""


class Deadline:
    def __init__(self, seconds: float, started: float | None = None) -> None:
        self.seconds = seconds
        self.at = (time.monotonic() if started is None else started) + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0

    def reached(self, during: str) -> DrillTimeout:
        return DrillTimeout(f"the drill's time limit ({self.seconds:g} s) was reached {during}")

    def check(self, during: str) -> None:
        if self.passed():
            raise self.reached(during)

    def guard(self, progress: ProgressCallback, during: str) -> ProgressCallback:
        """PROGRESS, raising DrillTimeout once the limit has passed."""

        def checked(report: Progress) -> None:
            self.check(during)
            progress(report)

        return checked

    @contextmanager
    def watchdog(self, on_expiry: Callable[[], object]) -> Iterator[threading.Event]:
        """Call ON_EXPIRY (from another thread) if the limit passes inside the
        block; the event yielded says whether it did. ON_EXPIRY has finished
        when the block is left, so nothing runs on behind the caller."""
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            try:
                on_expiry()
            except Exception:  # the caller's own cleanup follows; log, don't lose it
                logger.exception("the drill's time limit: stopping the step failed")

        timer = threading.Timer(max(0.0, self.left()), expire)
        timer.daemon = True
        timer.start()
        try:
            yield fired
        finally:
            timer.cancel()
            timer.join()
