"""How long a restore's phases took, and its downtime: from the first stop
to the app started (the last of its containers, by Docker's own StartedAt),
which the stay-up check after it is not part of (the app is serving)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import docker

# Phases, in their order; the result and the benchmark read these names.
VALIDATE_AND_STAGE = "validate_and_stage"  # one read, the app running
VALIDATE = "validate"  # the old order's first read (no room to stage beside the data)
SAFETY_BACKUP = "safety_backup"
# Waiting for the dumps' loads into shadow databases, which run beside the
# staging pass and the safety backup: only what they take beyond those.
DATABASES_WHILE_RUNNING = "databases_while_running"
STOP = "stop"
EXTRACT = "extract"  # the old order's second read, the app stopped
SWAP = "swap"
DATABASES = "databases"
START = "start"
CHECK = "check"
DROP_SHADOWS = "drop_shadow_databases"  # the app is up: the swapped-out tables dropped


class Timeline:
    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._down_at: float | None = None  # wall clock: Docker's StartedAt is one too
        self._up_at: float | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        begun = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.monotonic() - begun, 3)

    def going_down(self) -> None:
        """Called just before the first container is stopped."""
        if self._down_at is None:
            self._down_at = time.time()

    def came_up(self, client: docker.DockerClient, ids: Sequence[str]) -> None:
        """The app is started: when the last of IDS started, by Docker's
        record (now, if that cannot be read); split the start/check phases."""
        now = time.time()
        started = [_started_at(client, container_id) for container_id in ids]
        known = [at for at in started if at is not None]
        up = max(known) if len(known) == len(started) and known else now
        self._up_at = min(max(up, self._down_at or up), now)
        together = self.phases.pop(START, 0.0)
        check = round(min(together, now - self._up_at), 3)
        self.phases[START] = round(together - check, 3)
        self.phases[CHECK] = check

    @property
    def downtime_seconds(self) -> float:
        if self._down_at is None:
            return 0.0
        up = self._up_at if self._up_at is not None else time.time()
        return round(max(0.0, up - self._down_at), 3)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _started_at(client: docker.DockerClient, container_id: str) -> float | None:
    try:
        text = client.api.inspect_container(container_id)["State"]["StartedAt"]
        # Docker gives nanoseconds; datetime takes microseconds.
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00")).timestamp()
    except Exception:  # a timing only: never a reason to fail the restore
        return None
