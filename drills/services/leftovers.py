"""What killed drills left behind: containers, volumes and networks labelled
backup-drill whose drill is not running any more, and Drill rows whose run
ended without them (the worker died: recovery failed the run)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from drills import conf
from drills.models import Drill
from engine.docker_client import connect
from engine.drill.sandbox import labelled_drills, remove_labelled
from snapshots.db_time import db_ago
from snapshots.locks import lease_seconds
from snapshots.models import Run

_ACTIVE = (Drill.State.PENDING, Drill.State.RUNNING)


def _uuids(ids: set[str]) -> list[uuid.UUID]:
    valid = []
    for value in ids:
        try:
            valid.append(uuid.UUID(value))
        except ValueError:
            continue  # not one of our drill ids
    return valid


def _removable(ages: dict[str, float]) -> list[str]:
    """Drills of ours (rows here) whose run is not running and beating (by the
    database's clock); and labelled objects no drill here knows, once older
    than any drill can last (another deployment's drill on this Docker host,
    or a database since reset, is not ours to cut short)."""
    ids = set(ages)
    known = {
        str(pk) for pk in Drill.objects.filter(pk__in=_uuids(ids)).values_list("pk", flat=True)
    }
    live = Run.objects.filter(pk__in=_uuids(known), state=Run.State.RUNNING,
                              heartbeat_at__gte=db_ago(lease_seconds()))  # fmt: skip
    alive = {str(pk) for pk in live.values_list("pk", flat=True)}
    stale = conf.time_limit_seconds() + 600
    return sorted((known - alive) | {i for i in ids - known if ages[i] > stale})


def sweep_drill_leftovers() -> list[str]:
    """Remove this host's leftovers of drills that are not running; close
    the Drill rows of runs that ended without them. Returns what was done."""
    done: list[str] = []
    client = connect(settings.DOCKER_HOST, timeout=30)
    try:
        for drill_id in _removable(labelled_drills(client)):
            removed = remove_labelled(client, drill_id)
            done += [f"drill {drill_id}: removed {what}" for what in removed]
    finally:
        client.close()
    orphans = Drill.objects.filter(state__in=_ACTIVE, host_id=settings.BACKUP_HOST_ID).filter(
        Q(run__isnull=True) | ~Q(run__state__in=[Run.State.PENDING, Run.State.RUNNING])
    )
    for drill in orphans.select_related("run"):
        reason = (drill.run.error if drill.run else "") or "its run ended without it"
        Drill.objects.filter(pk=drill.pk, state__in=_ACTIVE).update(
            state=Drill.State.FINISHED, outcome=Drill.Outcome.FAILED,
            reason=f"the drill did not finish: {reason}", finished_at=timezone.now(),
        )  # fmt: skip
        done.append(f"drill {drill.pk}: marked failed ({reason})")
    return done
