"""Retrying one unit of S3 work (a part, a ranged read) with backoff.

botocore's standard mode already retries each request a few times; this is
the outer loop for failures that outlast it (a server restarting, a network
cut for longer than a few seconds). Only transient errors are retried: a
wrong key or a missing bucket fails at once."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from storage.s3_config import is_transient

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 20.0) -> float:
    """Full jitter (AWS's advice): uniform in [0, min(cap, base * 2^attempt)]."""
    # Jitter spreads retries, it protects nothing: no need for a CSPRNG.
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311


def with_retries(
    work: Callable[[], T],
    *,
    attempts: int,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run work() until it succeeds, retrying transient errors up to ATTEMPTS
    times in all; the last error propagates. WHAT names the unit in the log
    (e.g. "part 3 of app/b.tar.zst"), never data or credentials."""
    for attempt in range(attempts):
        try:
            return work()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            delay = backoff_delay(attempt)
            log.warning(
                "%s: %s, retrying in %.1f s (%d/%d)",
                what,
                type(exc).__name__,
                delay,
                attempt + 1,
                attempts,
            )
            sleep(delay)
    raise AssertionError("unreachable")
