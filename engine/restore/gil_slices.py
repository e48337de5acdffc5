"""Shorter GIL slices while a restore extracts.

The extracting thread gives the GIL up on every syscall (tens of thousands of
file creations and writes) and then waits to take it back from the
decompressing, hashing and read-ahead threads. With Python's switch interval
of 5 ms a thread holding the GIL keeps it up to that long each time; at
0.5 ms the staging pass of a 2.2 GB, 56,000-file archive took 10.1-11.1 s
against 11.4-13.4 s, same run (bench/README, "Shorter GIL slices").

The interval is process-wide: it is set on the first entry and put back on
the last exit, so restores that overlap in one process (threads) leave it
as it was.

Not used for backups: the same change left bench_backup's ratios as they
were (plain 0.70/0.72/0.65 against 0.72/0.72/0.66 of tar | zstd, 1 GB,
16,170 entries): a backup hands the GIL over far less often per GB."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

GIL_SLICE_SECONDS = 0.0005

_lock = threading.Lock()
_users = 0
_before = 0.0


@contextmanager
def short_gil_slices() -> Iterator[None]:
    """While the block runs, the interpreter switches threads every
    GIL_SLICE_SECONDS."""
    global _users, _before
    with _lock:
        if _users == 0:
            _before = sys.getswitchinterval()
            sys.setswitchinterval(GIL_SLICE_SECONDS)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                sys.setswitchinterval(_before)
