"""One backup or restore per app at a time, across every worker: a lease
with fencing on the app's AppLock row (see its docstring). An app is
(host_id, app_id): the same Compose project name on two Docker hosts is two
apps, whose locks never block each other.

Every time here is the database's (Now()): workers' clocks may disagree, the
database's is the one all of them read. The statements are single
conditional UPDATEs, so two workers can never both take a lease, on
PostgreSQL (row locks) as on the embedded SQLite (one writer at a time)."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Now

from engine.errors import AppLocked, LeaseLost
from snapshots.db_time import db_now_plus
from snapshots.models import AppLock, Run

logger = logging.getLogger(__name__)


def lease_seconds() -> int:
    return settings.BACKUP_LEASE_SECONDS


def renew_every_seconds() -> float:
    """Renewals a quarter of the lease apart: three may fail (a slow
    database, a busy SQLite file) before a live holder's lease expires."""
    return max(1.0, lease_seconds() / 4)


@dataclass(frozen=True)
class Lease:
    """A held lease: what the holder presents to renew, check and release."""

    app_id: str
    run_id: object
    token: str
    fence: int
    host_id: str

    def _mine(self) -> Q:
        return Q(host_id=self.host_id, app_id=self.app_id, token=self.token, fence=self.fence)

    def renew(self) -> bool:
        """Push the expiry a lease further; False once the lease is lost
        (taken over after it expired). Runs on the run's progress relay."""
        renewed = AppLock.objects.filter(self._mine()).update(
            heartbeat_at=Now(), expires_at=db_now_plus(lease_seconds())
        )
        return renewed == 1

    def check(self, step: str = "") -> None:
        """Raise LeaseLost unless this lease is still held and unexpired by the
        database's clock. Called before every step that changes an app's
        state: an expired holder must stop even if nobody took over yet,
        because recovery may be about to."""
        if not AppLock.objects.filter(self._mine(), expires_at__gt=Now()).exists():
            what = f" before {step}" if step else ""
            raise LeaseLost(
                f"the lock of app {self.app_id} was lost{what} (lease fence {self.fence} expired "
                "or taken over); stopping without changing anything more"
            )

    def release(self) -> None:
        AppLock.objects.filter(self._mine()).update(
            run=None, token="", expires_at=None, heartbeat_at=None
        )


def lock_host(host_id: str | None) -> str:
    """The host part of a lock's key: a run's host_id, this host's for a
    run that records none (rows from before the fleet)."""
    return host_id or settings.BACKUP_HOST_ID


def acquire_app_lock(app_id: str, run: Run, wait_seconds: float = 0) -> Lease:
    """Take the lease of APP_ID on RUN's host for RUN, waiting up to
    WAIT_SECONDS; else AppLocked."""
    host_id = lock_host(run.host_id)
    deadline = time.monotonic() + wait_seconds
    while True:
        lease = try_acquire(app_id, run.pk, host_id=host_id)
        if lease is not None:
            return lease
        if time.monotonic() >= deadline:
            raise AppLocked(_busy_message(host_id, app_id))
        time.sleep(1)


def try_acquire(
    app_id: str, run_id: object, takeable: Q | None = None, host_id: str | None = None
) -> Lease | None:
    """The lease if it is free, or expired (by the database's clock) and its
    holder's run has ended; else None. An expired lease whose run is still
    `running` belongs to a dead worker whose changes are not undone yet: only
    that run's recovery may take it (take_over_for_recovery). Each grant
    increments the fence. HOST_ID: this host's when not given."""
    host_id = lock_host(host_id)
    if takeable is None:
        takeable = Q(run__isnull=True) | (
            Q(expires_at__lt=Now()) & ~Q(run__state=Run.State.RUNNING)
        )
    _ensure_row(host_id, app_id)
    token = secrets.token_hex(16)
    grant = {
        "run_id": run_id, "token": token, "fence": F("fence") + 1, "acquired_at": Now(),
        "heartbeat_at": Now(), "expires_at": db_now_plus(lease_seconds()),
    }  # fmt: skip
    row = AppLock.objects.filter(host_id=host_id, app_id=app_id)
    if row.filter(takeable).update(**grant) != 1:
        return None
    fence = row.filter(token=token).values_list("fence", flat=True)
    return Lease(app_id, run_id, token, fence[0], host_id)


def take_over_for_recovery(run: Run) -> Lease | None:
    """The lease of RUN's app for RUN's recovery: if it is free, or still
    RUN's own and expired. None while another run holds it."""
    mine_and_expired = Q(run_id=run.pk, expires_at__lt=Now())
    return try_acquire(
        run.app_id, run.pk, Q(run__isnull=True) | mine_and_expired, host_id=run.host_id
    )


def _ensure_row(host_id: str, app_id: str) -> None:
    if AppLock.objects.filter(host_id=host_id, app_id=app_id).exists():
        return
    try:
        with transaction.atomic():  # a savepoint: a concurrent insert is no error
            AppLock.objects.create(host_id=host_id, app_id=app_id)
    except IntegrityError:
        pass


def _busy_message(host_id: str, app_id: str) -> str:
    held = AppLock.objects.held().filter(host_id=host_id, app_id=app_id)
    lock = held.select_related("run").first()
    if lock is None or lock.run is None:
        return f"app {app_id} on host {host_id} is busy; try again"
    return (
        f"app {app_id} on host {host_id} is busy: a {lock.run.operation} (run "
        f"{lock.run_id}) has been running since {lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC; "
        "only one backup or restore per app runs at a time"
    )


def release_app_lock(lease: Lease | None) -> None:
    if lease is not None:
        lease.release()


def app_is_locked(app_id: str, host_id: str | None = None) -> bool:
    """APP_ID on HOST_ID (this host when not given) has its lease held."""
    return AppLock.objects.held().filter(host_id=lock_host(host_id), app_id=app_id).exists()
