"""Which backups are incremental, and against what (issue 13).

An incremental is asked for; whether it is one is decided when the backup
runs, under the app's lock, so two requests queued together never pick the
same parent. It is full when: it is the app's first backup; the app's latest
finished backup failed (a chain is never continued across a failure); the
parent's archive is gone or lives elsewhere (another storage location, other
encryption); or the parent is already the app's policy's
incrementals_before_full-th incremental (N = 7 by default: every (N+1)th
backup is full). The engine may still make it full when the parent's index
on this host is lost (a warning says so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.errors import EngineError
from engine.incremental.chain import ChainLink
from snapshots.models import AppBackupPolicy, Snapshot
from snapshots.storage_locations import get_storage

logger = logging.getLogger(__name__)

BACKUP_TYPES = ("full", "incremental")


@dataclass(frozen=True)
class ChainDecision:
    parent: Snapshot | None  # None: full
    link: ChainLink | None
    why_full: str = ""  # for an incremental asked for and not made


def decide_chain(snapshot: Snapshot, backup_type: str, policy: AppBackupPolicy) -> ChainDecision:
    """Full or incremental for SNAPSHOT (running), asked for as BACKUP_TYPE."""
    if backup_type != "incremental":
        return ChainDecision(None, None)
    previous = (
        Snapshot.objects.filter(
            app_id=snapshot.app_id,
            status__in=[Snapshot.Status.COMPLETED, Snapshot.Status.FAILED],
        )
        # A safety backup taken before a restore starts no chain of the app's own.
        .exclude(purpose=Snapshot.Purpose.PRE_RESTORE)
        .exclude(pk=snapshot.pk)
        .order_by("-created_at", "-pk")
        .first()
    )
    if previous is None:
        return ChainDecision(None, None, "the app's first backup is full")
    if previous.status == Snapshot.Status.FAILED:
        return ChainDecision(None, None, f"full: the latest backup ({previous.backup_id}) failed")
    why = _unusable_parent(snapshot, previous)
    if why:
        return ChainDecision(None, None, f"full: {why}")
    if previous.chain_position >= policy.incrementals_before_full:
        return ChainDecision(
            None, None,
            f"full: {previous.backup_id} is incremental {previous.chain_position} of its chain "
            f"(at most {policy.incrementals_before_full} before a full)",
        )  # fmt: skip
    link = ChainLink(previous.backup_id, previous.sha256, previous.chain_position + 1)
    return ChainDecision(previous, link)


def _unusable_parent(snapshot: Snapshot, parent: Snapshot) -> str:
    """Why PARENT cannot be SNAPSHOT's parent, or ''."""
    if parent.storage_location != snapshot.storage_location:
        return (
            f"the latest backup ({parent.backup_id}) is in {parent.storage_location}, "
            f"this one goes to {snapshot.storage_location}"
        )
    if parent.encrypted != snapshot.encrypted:
        return f"the latest backup ({parent.backup_id}) is encrypted differently"
    if not parent.storage_key or not parent.sha256:
        return f"the latest backup ({parent.backup_id}) has no stored archive"
    try:
        present = get_storage(parent.storage_location).exists(parent.storage_key)
    except EngineError as exc:
        logger.warning("backup %s: parent %s not checked: %s", snapshot.backup_id,
                       parent.backup_id, exc)  # fmt: skip
        present = False
    if not present:
        return f"the archive of the latest backup ({parent.backup_id}) is missing"
    return ""
