"""python manage.py backup create|verify|restore|upload|list|cleanup

Runs the same services as the API and the Celery tasks, in this process (no
broker needed), with a progress bar when stderr is a terminal. SIGTERM and
SIGINT end create, verify and restore the way a failure does (containers
brought back, a restore rolled back, the run marked failed with why), then
the command exits with 128 + the signal's number."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from engine.errors import EngineError, Terminated
from engine.progress import Progress
from engine.termination import stop_on
from snapshots.models import Snapshot
from snapshots.services.backup import request_backup, run_backup
from snapshots.services.chain_index import rebuild_snapshot_index
from snapshots.services.offsite import UploadRefused, follow_upload, request_upload, run_upload
from snapshots.services.restore import (
    RestoreOptions,
    RestoreRefused,
    request_restore,
    run_restore,
)
from snapshots.services.verify import request_verify, run_verify
from snapshots.storage_locations import UnknownStorageLocation
from snapshots.tasks import cleanup


def _human(size: float | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TiB"


def log_destination() -> str:
    """Where this process's log records go, from the logging configuration
    Django applied (settings.LOGGING: the root logger's handlers at
    LOG_LEVEL). A command-line run has no worker: its log is this one."""
    root = logging.getLogger()
    if not root.isEnabledFor(logging.ERROR):
        level = logging.getLevelName(root.getEffectiveLevel())
        return (
            f"nothing of it was logged (LOG_LEVEL={level}); "
            "run again with LOG_LEVEL=INFO for its log on standard error"
        )
    places: list[str] = []
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            places.append(f"the file {handler.baseFilename}")
        elif isinstance(handler, logging.StreamHandler):
            to_stdout = handler.stream in (sys.stdout, sys.__stdout__)
            to_stdout = to_stdout or getattr(handler.stream, "name", "") == "<stdout>"
            stream = "standard output" if to_stdout else "standard error"
            places.append(f"this command's {stream}")
    if not places:
        return "no log handler is configured, so nothing of it was logged"
    level = logging.getLevelName(root.getEffectiveLevel())
    return f"its log (LOG_LEVEL={level}) went to {' and '.join(dict.fromkeys(places))}"


def failure(what: str, error: str, run_id: object) -> CommandError:
    """The command's error for a failed run: the run's error, which run it
    was (the admin shows it), and where this run's log went. The services
    word an internal error for a worker ("see the worker log"): here the
    line after it says where the log is instead."""
    error = error.replace("; see the worker log", "")
    if not error.startswith(f"{what} failed"):  # a restore's error already says so
        error = f"{what} failed: {error}"
    return CommandError(
        f"{error}\nRun {run_id} ran in this command, not on a worker: {log_destination()}."
    )


class ProgressBar:
    """One self-rewriting line on a terminal; silent otherwise."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._enabled = stream.isatty()

    def __call__(self, progress: Progress) -> None:
        if not self._enabled:
            return
        if progress.bytes_total:
            fraction = min(progress.bytes_done / progress.bytes_total, 1.0)
            bar = "#" * int(fraction * 30)
            text = f"{progress.phase:<11} [{bar:<30}] {fraction:6.1%} {_human(progress.bytes_done)}"
        else:
            text = f"{progress.phase:<11} {_human(progress.bytes_done)} {progress.detail}"
        self._stream.write("\r" + text[:100].ljust(100))
        self._stream.flush()

    def done(self) -> None:
        if self._enabled:
            self._stream.write("\n")


class Command(BaseCommand):
    help = "Create, verify and list backups of Docker Compose apps."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="back an app up now")
        create.add_argument("app_id")
        create.add_argument("--consistency", choices=["live", "pause", "stop"])
        encrypt = create.add_mutually_exclusive_group()
        encrypt.add_argument("--encrypt", dest="encrypt", action="store_true", default=None)
        encrypt.add_argument("--no-encrypt", dest="encrypt", action="store_false")
        create.add_argument("--storage", default="local")
        create.add_argument(
            "--incremental", action="store_true",
            help="write only what changed since the app's latest backup (full when it cannot)",
        )  # fmt: skip
        create.add_argument(
            "--wait", type=float, default=0, help="seconds to wait if the app is busy (else refuse)"
        )
        verify = sub.add_parser("verify", help="verify a backup without restoring it")
        verify.add_argument("backup_id")
        verify.add_argument("--deep", action="store_true", help="decrypt and check every file")
        restore = sub.add_parser("restore", help="restore an app from a backup")
        restore.add_argument("app_id")
        restore.add_argument("backup_id")
        restore.add_argument("--no-stop", action="store_true", help="do not stop the app first")
        restore.add_argument(
            "--no-database", action="store_true", help="leave databases as they are"
        )
        restore.add_argument(
            "--no-safety-backup", action="store_true", help="skip the backup of the current state"
        )
        restore.add_argument(
            "--accept-no-database-rollback", action="store_true",
            help="restore the databases even if a failure could not roll them back",
        )  # fmt: skip
        upload = sub.add_parser("upload", help="copy a snapshot off-site (again)")
        upload.add_argument("backup_id")
        upload.add_argument("--deep-check", action="store_true", help="read the copy back")
        listing = sub.add_parser("list", help="list snapshots")
        listing.add_argument("--app")
        listing.add_argument("--host", metavar="HOST_ID", help="only the snapshots this host made")
        listing.add_argument("--status", choices=[s.value for s in Snapshot.Status])
        listing.add_argument("--json", action="store_true")
        sub.add_parser("cleanup", help="fail runs of dead workers, remove half-written files")
        drill = sub.add_parser("drill", help="restore its databases into throwaway containers")
        which = drill.add_mutually_exclusive_group(required=True)
        which.add_argument("backup_id", nargs="?")
        which.add_argument("--app", metavar="APP_ID", help="drill the app's latest snapshot")
        rebuild = sub.add_parser(
            "index-rebuild", help="write a snapshot's index (for incrementals) again from its chain"
        )
        rebuild.add_argument("backup_id")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action not in ("create", "verify", "restore", "upload", "drill", "index-rebuild"):
            getattr(self, f"_{action}")(options)
            return
        try:
            with stop_on(signal.SIGTERM, signal.SIGINT):
                getattr(self, f"_{action.replace('-', '_')}")(options)
        except Terminated as exc:
            raise CommandError(
                f"{action} {exc}: ended like a failure; its run says what was undone",
                returncode=128 + exc.signum,
            ) from None
        except (EngineError, UnknownStorageLocation) as exc:
            # A refusal (unknown storage, no key, an app or snapshot that
            # cannot be used): its message, on one line, not a traceback.
            raise CommandError(" ".join(str(exc).split())) from None

    def _create(self, options: dict[str, Any]) -> None:
        # This command runs on the app's host: an unknown app is refused here,
        # before any row is made, rather than failing as a snapshot.
        run = request_backup(
            options["app_id"], consistency=options["consistency"], encrypt=options["encrypt"],
            storage_location=options["storage"], app_must_be_here=True,
            backup_type="incremental" if options["incremental"] else "full",
        )  # fmt: skip
        bar = ProgressBar(sys.stderr)
        snapshot = run_backup(str(run.pk), on_progress=bar, wait_for_lock_seconds=options["wait"])
        bar.done()
        if snapshot.status != Snapshot.Status.COMPLETED:
            raise failure(f"backup {snapshot.backup_id}", snapshot.error, run.pk)
        kind = snapshot.kind
        if snapshot.parent_id:
            kind += f" on {snapshot.parent.backup_id} (chain of {snapshot.chain_length})"  # type: ignore[union-attr]
        self.stdout.write(
            f"{snapshot.backup_id} completed ({kind}): {_human(snapshot.size_bytes)}, "
            f"sha256 {snapshot.sha256}, {snapshot.storage_location}:{snapshot.storage_key}"
        )
        for warning in snapshot.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        upload_bar = ProgressBar(sys.stderr)  # `local+s3`, `s3`: the off-site copy, here
        upload = follow_upload(snapshot, upload_bar)
        upload_bar.done()
        if upload is not None and upload.state != upload.State.COMPLETED:
            raise failure(f"off-site copy of {snapshot.backup_id}", upload.error, upload.pk)
        if upload is not None:
            self.stdout.write(f"copied off-site: {', '.join(upload.options.get('targets', []))}")

    def _index_rebuild(self, options: dict[str, Any]) -> None:
        snapshot = Snapshot.objects.filter(backup_id=options["backup_id"]).first()
        if snapshot is None:
            raise CommandError(f"no snapshot {options['backup_id']!r}")
        path, entries = rebuild_snapshot_index(snapshot)
        self.stdout.write(f"index of {snapshot.backup_id} rebuilt: {path} ({entries} entries)")

    def _verify(self, options: dict[str, Any]) -> None:
        snapshot = Snapshot.objects.filter(backup_id=options["backup_id"]).first()
        if snapshot is None:
            raise CommandError(f"no snapshot {options['backup_id']!r}")
        run = request_verify(snapshot, deep=options["deep"])
        bar = ProgressBar(sys.stderr)
        run = run_verify(str(run.pk), on_progress=bar)
        bar.done()
        self.stdout.write(json.dumps(run.result or {"error": run.error}, indent=2))
        if run.state != run.State.COMPLETED:
            raise failure("verification", run.error, run.pk)

    def _upload(self, options: dict[str, Any]) -> None:
        snapshot = Snapshot.objects.filter(backup_id=options["backup_id"]).first()
        if snapshot is None:
            raise CommandError(f"no snapshot {options['backup_id']!r}")
        try:
            run = request_upload(snapshot, deep_check=options["deep_check"] or None)
        except UploadRefused as exc:
            raise CommandError(str(exc)) from None
        bar = ProgressBar(sys.stderr)
        run = run_upload(str(run.pk), on_progress=bar)
        bar.done()
        self.stdout.write(json.dumps(run.result or {"error": run.error}, indent=2))
        if run.state != run.State.COMPLETED:
            raise failure(f"off-site copy of {snapshot.backup_id}", run.error, run.pk)

    def _restore(self, options: dict[str, Any]) -> None:
        restore_options = RestoreOptions(
            stop_app=not options["no_stop"],
            restore_database=not options["no_database"],
            backup_before_restore=not options["no_safety_backup"],
            accept_no_database_rollback=options["accept_no_database_rollback"],
        )
        try:
            run = request_restore(options["app_id"], options["backup_id"], restore_options)
        except RestoreRefused as exc:
            raise CommandError(str(exc)) from None
        bar = ProgressBar(sys.stderr)
        run = run_restore(str(run.pk), on_progress=bar)
        bar.done()
        self.stdout.write(json.dumps(run.result, indent=2))
        if run.state != run.State.COMPLETED:
            raise failure("restore", run.error, run.pk)

    def _list(self, options: dict[str, Any]) -> None:
        try:
            self._print_list(options)
        except BrokenPipeError:
            # The reader left (`backup list | head`): nothing more to say.
            # stdout now points at /dev/null, so the interpreter's last flush
            # does not raise again and print a traceback.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    def _print_list(self, options: dict[str, Any]) -> None:
        rows = Snapshot.objects.select_related("parent")
        if options["app"]:
            rows = rows.filter(app_id=options["app"])
        if options["status"]:
            rows = rows.filter(status=options["status"])
        if options["host"]:
            rows = rows.filter(host_id=options["host"])
        if options["json"]:
            data = [
                {"backup_id": s.backup_id, "app_id": s.app_id, "host_id": s.host_id,
                 "status": s.status,
                 "kind": s.kind, "purpose": s.purpose,
                 "parent_backup_id": s.parent.backup_id if s.parent else None,
                 "chain_length": s.chain_length, "size_bytes": s.size_bytes,
                 "bytes_written": s.bytes_written, "bytes_full": s.bytes_full,
                 "created_at": s.created_at.isoformat(), "warnings": s.warnings}
                for s in rows
            ]  # fmt: skip
            self.stdout.write(json.dumps(data, indent=2))
            return
        for s in rows:
            # "incr #3": a restore of it reads 3 archives, its full and 2 incrementals.
            kind = "full" if s.kind == Snapshot.Kind.FULL else f"incr #{s.chain_length}"
            self.stdout.write(
                f"{s.backup_id}  {s.app_id:<24} {s.status:<10} {kind:<8} "
                f"{_human(s.size_bytes):>10}  {s.created_at:%Y-%m-%d %H:%M:%S}"
                + ("  safety backup" if s.purpose == Snapshot.Purpose.PRE_RESTORE else "")
                + (f"  {len(s.warnings)} warning(s)" if s.warnings else "")
            )

    def _drill(self, options: dict[str, Any]) -> None:
        from drills.cli import drill_command  # the drills app's own command code

        bar = ProgressBar(sys.stderr)
        try:
            drill_command(options["backup_id"], self.stdout, bar, app_id=options["app"])
        finally:
            bar.done()

    def _cleanup(self, options: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(cleanup(), indent=2))
