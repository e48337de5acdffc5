"""Could a failed restore give the databases back? Decided before anything
is touched: from the app's policy and the settings (before the safety
backup), then by reading the safety backup just taken as a rollback would.
A gap refuses the restore unless the caller accepted it."""

from __future__ import annotations

import logging
from typing import Any

import docker

from engine.errors import EngineError
from engine.inventory import AppInfo
from engine.restore.plan import RestorePlan, make_plan, read_backup_json
from snapshots.models import AppBackupPolicy, Run, Snapshot
from snapshots.services.encryption import EncryptionNotConfigured, identities, write_options
from snapshots.services.restore_archive import open_stream
from snapshots.services.restore_errors import NoDatabaseRollback

logger = logging.getLogger(__name__)

ACCEPT_HINT = (
    "to restore anyway, without a rollback of the databases, pass "
    "accept_no_database_rollback=true (CLI: --accept-no-database-rollback)"
)

POLICY_GAP = (
    "the app's backup policy excludes databases (include_databases=false), so the safety "
    "backup would hold no dump of them"
)


def no_rollback_message(app_id: str, why: str, databases: list[str] | None = None) -> str:
    which = f" ({', '.join(databases)})" if databases else ""
    return (
        f"restore of app {app_id} refused: it restores databases{which} that could not be "
        f"rolled back if the restore failed: {why}; nothing was changed; {ACCEPT_HINT}"
    )


def policy_excludes_databases(app_id: str) -> bool:
    return AppBackupPolicy.objects.filter(app_id=app_id, include_databases=False).exists()


def predicted_rollback_gap(app_id: str) -> str | None:
    """Why the safety backup about to be taken could not give the databases
    back, as far as is known before taking it (the policy and the settings)."""
    if policy_excludes_databases(app_id):
        return POLICY_GAP
    recipients, secret = write_options(None)
    if recipients and secret is None and not _identities_or_none():
        return (
            "the safety backup would be encrypted to age recipients only and this worker has "
            "no identity to read it back (BACKUP_AGE_IDENTITY_FILE)"
        )
    return None


def _identities_or_none() -> list[str]:
    try:
        return identities()
    except EncryptionNotConfigured:  # the file named cannot be read: no identity
        return []


def rollback_gap(
    client: docker.DockerClient, app: AppInfo, plan: RestorePlan, safety: Snapshot
) -> str | None:
    """Why the safety backup just taken cannot give the databases of PLAN
    back: its backup.json is read as the rollback would read it (decryption
    included), and it must hold a dump of every database the restore changes."""
    try:
        backup = read_backup_json(open_stream(safety))
        rollback_plan = make_plan(client, app, backup, restore_database=True)
    except EngineError as exc:
        return f"the safety backup {safety.backup_id} cannot be read back on this worker: {exc}"
    missing = sorted(set(plan.databases) - set(rollback_plan.databases))
    if missing:
        return f"the safety backup {safety.backup_id} holds no dump of {', '.join(missing)}"
    return None


def no_rollback(
    run: Run, accepted: bool, plan: RestorePlan, why: str, result: dict[str, Any]
) -> None:
    """Refuse (nothing touched yet), or go on when the caller ACCEPTED it,
    saying so in the result."""
    databases = sorted(plan.databases)
    if not accepted:
        raise NoDatabaseRollback(no_rollback_message(run.app_id, why, databases))
    logger.warning("restore %s: no database rollback possible (accepted): %s", run.pk, why)
    result["database_rollback"] = False
    result["warnings"].append(
        f"no rollback of the databases ({', '.join(databases)}) is possible: {why}; "
        "accepted by the caller (accept_no_database_rollback)"
    )
