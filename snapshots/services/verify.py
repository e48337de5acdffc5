"""Verification service: quick (checksum only) or deep (every member)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings

from engine.errors import EngineError, Terminated
from engine.progress import Progress
from engine.verify import verify_backup
from schedules.notifications import verify_failed
from snapshots.models import Run, Snapshot
from snapshots.run_reporter import run_reporter
from snapshots.runs import claim_run, fail_run, finish_run
from snapshots.services.encryption import EncryptionNotConfigured, identities, passphrase
from snapshots.services.offsite_verify import check_copies, read_copy
from snapshots.storage_locations import get_storage, offsite_targets

logger = logging.getLogger(__name__)


class NotVerifiable(EngineError):
    pass


def request_verify(snapshot: Snapshot, deep: bool, host_id: str | None = None) -> Run:
    refuse_unless_verifiable(snapshot)
    return Run.objects.create(
        operation=Run.Operation.VERIFY, app_id=snapshot.app_id, snapshot=snapshot,
        host_id=host_id or settings.BACKUP_HOST_ID, options={"deep": deep},
    )  # fmt: skip


def refuse_unless_verifiable(snapshot: Snapshot) -> None:
    """NotVerifiable unless SNAPSHOT is completed: checked before its host
    is looked up, so the answer is about the snapshot, not the fleet."""
    if snapshot.status != Snapshot.Status.COMPLETED:
        # Said plainly, whichever way it is asked (CLI: one line; API: 409).
        why = (
            "a failed backup has no archive to verify"
            if snapshot.status == Snapshot.Status.FAILED
            else "it can be verified once it is completed"
        )
        raise NotVerifiable(
            f"snapshot {snapshot.backup_id} is {snapshot.status}: {why}; only completed "
            "snapshots can be verified"
        )


def verify_snapshot(
    snapshot: Snapshot, *, deep: bool, progress: Callable[[Progress], None] | None = None
) -> dict[str, Any]:
    """The verification report (never modifies the archive): the checks,
    snapshot_id (= backup_id), contains (counts) and contents (what is inside:
    the deep scan's findings, or what the snapshot recorded for a quick one);
    with off-site copies, copies: one check per copy (services.offsite_verify),
    the errors then each naming the copy that is wrong."""
    keys = identities() if deep and snapshot.encrypted else []
    secret = passphrase() if deep and snapshot.encrypted else None
    if deep and snapshot.encrypted and not keys and secret is None:
        raise EncryptionNotConfigured(
            f"snapshot {snapshot.backup_id} is encrypted: reading it needs the age identity "
            "(BACKUP_AGE_IDENTITY_FILE) or the passphrase (BACKUP_PASSPHRASE)"
        )
    has_copies = bool(offsite_targets(snapshot.storage_location))
    read_from = read_copy(snapshot) if has_copies else None
    result = verify_backup(
        get_storage(snapshot.storage_location),
        snapshot.storage_key,
        snapshot.sha256,
        deep=deep,
        compression=snapshot.compression,  # type: ignore[arg-type]
        encrypted=snapshot.encrypted,
        identities=keys,
        passphrase=secret,
        progress=progress or (lambda _: None),
    )
    # Quick verification reads no member: it reports what the backup recorded.
    contents = dict(result.contents) if deep else dict(snapshot.contents or {})
    valid, errors = result.valid, list(result.errors)
    copies: dict[str, Any] = {}
    if read_from is not None:
        reports = check_copies(snapshot, read_from, result)
        copies = {"copies": reports, "read_from": read_from}
        errors = [r["error"] for r in reports if r.get("ok") is False] or errors
        valid = valid and not any(r.get("ok") is False for r in reports)
    chain: dict[str, Any] = {}
    if deep and snapshot.kind == Snapshot.Kind.INCREMENTAL:
        chain_ids, chain_errors = _chain_links(snapshot)
        chain = {"chain": chain_ids}
        errors += chain_errors
        valid = valid and not chain_errors
    return {
        "valid": valid,
        "checksum_match": result.checksum_match,
        "sidecar_match": result.sidecar_match,
        "sha256": result.sha256,
        "size_bytes": result.size_bytes,
        "deep": result.deep,
        "errors": errors,
        **copies,
        **chain,
        "snapshot_id": snapshot.backup_id,
        "backup_id": snapshot.backup_id,
        "app_id": snapshot.app_id,
        "contains": contains(contents),
        "contents": contents,
    }


def _chain_links(snapshot: Snapshot) -> tuple[list[str], list[str]]:
    """(the chain's backup ids full first, errors): every link completed, its
    archive present, its backup.json naming the one before (and that one's
    SHA-256) as parent, what a restore checks first. Each link's own bytes
    are checked by verifying it."""
    from snapshots.services.restore_chain import ready_chain  # restore imports this module

    try:
        links, _, _ = ready_chain(snapshot)
    except EngineError as exc:
        return [], [str(exc)]
    return [link.backup_id for link in reversed(links)], []


def contains(contents: dict[str, Any]) -> dict[str, int]:
    """How many volumes, databases and config files CONTENTS lists: the
    platform UI's original verify shape (ints), beside the lists in contents."""
    return {name: _count(contents.get(name)) for name in ("volumes", "databases", "config_files")}


def _count(listed: Any) -> int:
    # volumes is a dict by name (deep scan, snapshot contents) or a list (older rows)
    return len(listed) if isinstance(listed, (dict, list, tuple)) else 0


def run_verify(run_id: str, on_progress: Callable[[Progress], None] | None = None) -> Run:
    run = claim_run(run_id)
    if run is None:
        return Run.objects.get(pk=run_id)
    try:
        if run.snapshot is None:
            raise NotVerifiable("the snapshot was deleted")
        # The reporter stops (its last report written) before the final state.
        with run_reporter(run, on_progress) as progress:
            report = verify_snapshot(
                run.snapshot, deep=bool(run.options.get("deep")), progress=progress
            )
        if report["valid"]:
            finish_run(run, report)
        else:
            fail_run(run, "; ".join(report["errors"][:5]), report)
    except Terminated as exc:  # the run says so, then the process goes on stopping
        fail_run(run, str(exc))
        raise
    except EngineError as exc:
        fail_run(run, str(exc))
    except Exception as exc:
        logger.exception("verify run %s crashed", run.pk)
        fail_run(run, f"internal error ({type(exc).__name__}); see the worker log")
    run.refresh_from_db()
    if run.state == Run.State.FAILED:
        verify_failed(run)  # never raises
    return run
