"""The guard a run gives the engine (engine.steps): before each step that
changes an app's state, check the run's lease (fencing), then write the
step to the run's journal (write-ahead), so a recovery knows what to undo.

Runs on the run's own thread: the engine calls the guard from the thread
that is about to act."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from snapshots.locks import Lease
from snapshots.models import Run


class RunGuard:
    def __init__(self, run: Run, lease: Lease | None) -> None:
        self._run_id = run.pk
        self._lease = lease
        self.entries: list[dict[str, Any]] = list(run.journal or [])

    def __call__(self, step: str, details: Mapping[str, Any]) -> None:
        if self._lease is not None:
            self._lease.check(step)
        self._write({"step": step, **details, "at": timezone.now().isoformat()})

    def note(self, what: str, details: Mapping[str, Any]) -> None:
        """A fact recovery needs (the safety backup's id), not a step: no
        lease check."""
        self._write({"step": what, **details, "at": timezone.now().isoformat()})

    def _write(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        # If this write fails the step does not happen: nothing unrecorded
        # is ever changed.
        Run.objects.filter(pk=self._run_id).update(journal=self.entries)
