"""Runs of a host whose worker stopped heartbeating (fleet).

A dead run is normally recovered by its own host's worker (only it can
reach that host's containers and volumes). A host that is offline has no
worker to do so, and its runs would stay `running`, their apps locked, for
as long as it is down. So beat's recovery round (snapshots.recover_hosts,
on the shared queue) fails them once their lease has expired and releases
their apps' locks, marking each `result.awaiting_host_recovery`. When the
host's worker runs again, its recovery (at start, and each round) puts each
such app back from the run's journal, as it would have for a live host:
paused or stopped containers run again, a restore not committed is rolled
back, half-written files go.

Uploads are left alone: they change no app and hold no app lock, and their
host's worker resumes them where they stopped."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models.functions import Now

from engine.errors import describe
from snapshots.locks import try_acquire
from snapshots.models import AppLock, Run
from snapshots.recovery import _fail_snapshot, dead_runs
from snapshots.recovery_undo import undo

logger = logging.getLogger(__name__)

AWAITING = "awaiting_host_recovery"


def host_is_offline(host_id: str) -> bool:
    """True when HOST_ID's worker registered and then stopped heartbeating.
    A host no worker ever registered is not known to be offline."""
    from fleet.selectors import get_host

    try:
        state = get_host(host_id)
    except Exception:  # a run's host id of another shape: not a fleet host
        return False
    return state is not None and not state.online


def fail_runs_of_offline_host(host_id: str) -> list[str]:
    """Fail HOST_ID's dead runs (their lease expired) and release their
    apps' locks; the ids failed."""
    failed: list[str] = []
    for run in dead_runs(host_id):
        if run.operation == Run.Operation.UPLOAD:
            continue
        died_in = (run.result or {}).get("died_in") or run.phase or "no"
        reason = (
            f"host {host_id} is offline (its worker stopped heartbeating): this {run.operation} "
            f"was failed once its lease expired (in its {died_in} phase) and the app's lock "
            "released; the host's worker puts the app back from the run's journal when it "
            "runs again"
        )
        result = {**(run.result or {}), "died_in": died_in, AWAITING: True}
        # Conditional: a worker that came back and claimed the run wins.
        claimed = (
            Run.objects.filter(pk=run.pk, state=Run.State.RUNNING, heartbeat_at=run.heartbeat_at)
            .update(state=Run.State.FAILED, error=reason, result=result, finished_at=Now())
        )  # fmt: skip
        if not claimed:
            continue
        _fail_snapshot(run, reason)
        AppLock.objects.filter(run_id=run.pk).update(
            run=None, token="", expires_at=None, heartbeat_at=None
        )
        logger.warning("run %s of app %s failed: %s", run.pk, run.app_id, reason)
        failed.append(str(run.pk))
    return failed


def recover_after_offline(host_id: str) -> dict[str, Any]:
    """On HOST_ID's worker: put back the apps of its runs failed while it
    was offline, each under its app's lease (an app busy with another run
    now waits for a later round); run id -> what was done."""
    done: dict[str, Any] = {}
    waiting = Run.objects.filter(
        host_id=host_id, state=Run.State.FAILED, **{f"result__{AWAITING}": True}
    )
    for run in waiting.select_related("snapshot"):
        lease = try_acquire(run.app_id, run.pk, host_id=run.host_id)
        if lease is None:
            continue
        try:
            outcome: dict[str, Any] = undo(run).to_json()
        except Exception as exc:  # one run's undoing must not stop the others'
            logger.exception("putting back app %s after run %s failed", run.app_id, run.pk)
            done[str(run.pk)] = {"error": describe(exc)}
            continue  # still awaiting: tried again next round
        finally:
            lease.release()
        result = {**(run.result or {}), "recovery": outcome, AWAITING: False}
        Run.objects.filter(pk=run.pk).update(result=result)
        logger.warning("put back app %s after run %s: %s", run.app_id, run.pk, outcome)
        done[str(run.pk)] = outcome
    return done
