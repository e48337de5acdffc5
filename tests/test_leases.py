"""App leases with fencing (snapshots.locks): one holder at a time, a fence
that grows with every grant, expiry by the database's clock only, takeover
of a dead run's lease by its recovery only, renewal on a timer of its own."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db.models.functions import Now
from django.utils import timezone

from engine.errors import AppLocked, LeaseLost
from engine.progress import Progress
from snapshots.locks import acquire_app_lock, app_is_locked, take_over_for_recovery, try_acquire
from snapshots.models import AppLock, Run
from snapshots.run_reporter import run_reporter
from snapshots.tasks import cleanup
from tests.api.conftest import make_snapshot  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db(transaction=True)


def new_run(state: str = Run.State.RUNNING) -> Run:
    return Run.objects.create(operation=Run.Operation.BACKUP, app_id="app1", state=state)


def expire(app_id: str = "app1") -> None:
    AppLock.objects.filter(app_id=app_id).update(expires_at=Now() - timedelta(seconds=1))


def test_the_same_app_id_on_two_hosts_locks_independently() -> None:
    """(host_id, app_id) is the app: host A's backup of "app1" does not make
    host B's wait; on one host it stays one holder at a time."""
    on_a = Run.objects.create(operation="backup", app_id="app1", host_id="host-a", state="running")
    on_b = Run.objects.create(operation="backup", app_id="app1", host_id="host-b", state="running")
    again_a = Run.objects.create(operation="restore", app_id="app1", host_id="host-a")
    lease_a = acquire_app_lock("app1", on_a)
    lease_b = acquire_app_lock("app1", on_b)
    assert (lease_a.host_id, lease_b.host_id) == ("host-a", "host-b")
    assert app_is_locked("app1", "host-a") and app_is_locked("app1", "host-b")
    with pytest.raises(AppLocked, match="app app1 on host host-a is busy: a backup"):
        acquire_app_lock("app1", again_a)
    lease_b.check("a step")  # each holds its own lease: B's check is not A's
    lease_a.release()
    assert not app_is_locked("app1", "host-a") and app_is_locked("app1", "host-b")
    assert acquire_app_lock("app1", again_a).fence == lease_a.fence + 1
    lease_b.release()
    assert sorted(AppLock.objects.values_list("host_id", "app_id", "fence")) == [
        ("host-a", "app1", 2), ("host-b", "app1", 1),
    ]  # fmt: skip


def test_restores_of_the_same_app_id_on_two_hosts_are_not_busy_for_each_other(
    make_snapshot: Any,  # noqa: F811 - the fixture imported above
) -> None:
    from snapshots.services.restore import AppBusy, RestoreOptions, request_restore

    snapshot = make_snapshot(app_id="app1", host_id="host-a")
    Run.objects.create(operation="backup", app_id="app1", host_id="host-b", state="running")
    first = request_restore("app1", snapshot.backup_id, RestoreOptions(), host_id="host-a")
    assert first.host_id == "host-a"
    with pytest.raises(AppBusy):  # the same app on the same host: one at a time
        request_restore("app1", snapshot.backup_id, RestoreOptions(), host_id="host-a")
    on_c = request_restore("app1", snapshot.backup_id, RestoreOptions(), host_id="host-c")
    assert on_c.host_id == "host-c"  # the database's one-restore rule is per host too
    with pytest.raises(AppBusy):  # host-b's app1 is being backed up
        request_restore("app1", snapshot.backup_id, RestoreOptions(), host_id="host-b")


def test_one_holder_and_the_fence_grows_with_every_grant() -> None:
    first, second = new_run(), new_run()
    lease = acquire_app_lock("app1", first)
    with pytest.raises(AppLocked, match="busy"):
        acquire_app_lock("app1", second)
    assert app_is_locked("app1")
    lease.release()
    assert not app_is_locked("app1")
    again = acquire_app_lock("app1", second)
    assert again.fence == lease.fence + 1
    # Released again, the row stays (that is what keeps the fence growing).
    again.release()
    assert AppLock.objects.get(app_id="app1").fence == 2


def test_an_expired_lease_of_a_running_run_is_only_for_its_recovery() -> None:
    dead, newcomer = new_run(), new_run(Run.State.PENDING)
    old = acquire_app_lock("app1", dead)
    expire()
    # A new backup may not take it: the dead run's changes are not undone yet.
    assert try_acquire("app1", newcomer.pk) is None
    recovery = take_over_for_recovery(dead)
    assert recovery is not None and recovery.fence == old.fence + 1
    # The old holder, should it still be alive, can do nothing more.
    with pytest.raises(LeaseLost, match="lost before swap"):
        old.check("swap")
    assert old.renew() is False
    old.release()  # a no-op: not its lease any more
    assert app_is_locked("app1")
    recovery.check("start")
    recovery.release()
    assert acquire_app_lock("app1", newcomer).fence == old.fence + 2


def test_an_expired_lease_of_an_ended_run_is_taken_over() -> None:
    ended, newcomer = new_run(), new_run()
    acquire_app_lock("app1", ended)
    Run.objects.filter(pk=ended.pk).update(state=Run.State.FAILED)
    assert try_acquire("app1", newcomer.pk) is None  # not expired yet
    expire()
    assert try_acquire("app1", newcomer.pk) is not None


def test_an_expired_holder_must_stop_even_before_anyone_takes_over() -> None:
    lease = acquire_app_lock("app1", new_run())
    expire()
    with pytest.raises(LeaseLost):
        lease.check("commit")


def test_expiry_is_by_the_database_clock_not_the_workers(monkeypatch: Any) -> None:
    """A worker whose clock runs an hour fast must not see live leases as
    expired (nor a slow one see dead ones as live)."""
    holder = new_run()
    acquire_app_lock("app1", holder)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=1))
    assert try_acquire("app1", new_run().pk) is None
    assert take_over_for_recovery(holder) is None


def test_a_silent_phase_longer_than_the_lease_keeps_the_lease(settings: Any) -> None:
    """Renewal runs on the reporter's timer, not on progress reports: a step
    that reports nothing for longer than the lease (one huge file, an index
    build) keeps its lease, and nobody else gets in."""
    settings.BACKUP_LEASE_SECONDS = 4
    run = new_run()
    Run.objects.filter(pk=run.pk).update(host_id=settings.BACKUP_HOST_ID)
    lease = acquire_app_lock("app1", run)
    with run_reporter(run, lease=lease) as progress:
        progress(Progress("restoring database"))
        time.sleep(7)  # silent, for well over the lease
        assert try_acquire("app1", new_run().pk) is None
        assert take_over_for_recovery(run) is None
        # A second worker of this host starts meanwhile: its recovery
        # leaves the live run alone.
        assert cleanup()["recovered_runs"] == {}
        lease.check("start")
    run.refresh_from_db()
    assert run.heartbeat_at is not None
    assert (timezone.now() - run.heartbeat_at).total_seconds() < 4
