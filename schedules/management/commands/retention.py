"""python manage.py retention preview <app_id> | apply <app_id> [--dry-run] | apply --all

The same service as the Celery tasks and the API preview, in this process
(no broker needed). preview and apply --dry-run delete nothing."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from engine.discovery import validate_app_id
from engine.errors import AppNotFound
from schedules.retention_service import (
    RetentionOutcome,
    app_is_known,
    apply_retention_for_app,
    apps_with_retention,
    plan_retention,
)


class Command(BaseCommand):
    help = "Show or apply the retention of an app's snapshots (restic forget's rules)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        preview = actions.add_parser("preview", help="what would be removed and kept, and why")
        apply = actions.add_parser("apply", help="remove what retention removes")
        for sub in (preview, apply):
            sub.add_argument("app_id", nargs="?", help="the app (Compose project name)")
            sub.add_argument("--all", action="store_true", help="every app with a retention rule")
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        apply.add_argument("--dry-run", action="store_true", help="decide, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        apps = self._apps(options["app_id"], options["all"])
        dry_run = options["action"] == "preview" or options.get("dry_run", False)
        outcomes = []
        for app_id in apps:
            if dry_run:
                outcomes.append(plan_retention(app_id))
            else:
                outcomes.append(apply_retention_for_app(app_id))
        if options["json"]:
            body = [_as_json(o) for o in outcomes]
            self.stdout.write(json.dumps(body, indent=2, cls=DjangoJSONEncoder))
        else:
            for outcome in outcomes:
                self._show(outcome)
        if not apps:
            self.stdout.write("no app has a retention rule: nothing to do")
        failed = sum(len(o.failed) for o in outcomes)
        if failed:
            raise CommandError(f"{failed} snapshot(s) could not be removed (listed above)")

    def _apps(self, app_id: str | None, every: bool) -> list[str]:
        if every == bool(app_id):
            raise CommandError("name one app_id, or give --all (not both)")
        if every:
            return apps_with_retention()
        try:
            validate_app_id(app_id)
        except AppNotFound as exc:
            raise CommandError(str(exc)) from exc
        if not app_is_known(app_id):  # type: ignore[arg-type]
            raise CommandError(f"unknown app {app_id!r}: it has no schedule or snapshot")
        return [app_id]  # type: ignore[list-item]

    def _show(self, outcome: RetentionOutcome) -> None:
        plan = outcome.plan
        verb = "would remove" if outcome.dry_run else "removed"
        self.stdout.write(f"{outcome.app_id}: {len(plan.kept)} kept, {len(plan.removed)} to remove")
        for decision in plan.decisions:
            mark = "keep  " if decision.keep else "remove"
            self.stdout.write(f"  {mark} {decision.backup_id}  {'; '.join(decision.reasons)}")
        if outcome.dry_run:
            self.stdout.write(f"{verb} {len(plan.removed)}, freeing {outcome.freed_bytes} bytes")
            return
        self.stdout.write(
            f"{verb} {len(outcome.removed)}, freed {outcome.freed_bytes} bytes"
            + (f"; skipped {len(outcome.skipped)}" if outcome.skipped else "")
        )
        for skipped in outcome.skipped:
            self.stdout.write(f"  skipped {skipped.backup_id}: {skipped.reason}")
        for failed in outcome.failed:
            self.stderr.write(f"  FAILED {failed.backup_id}: {failed.reason}")


def _as_json(outcome: RetentionOutcome) -> dict[str, Any]:
    return {
        **outcome.summary(),
        "remove": outcome.decision_rows(keep=False),
        "keep": outcome.decision_rows(keep=True),
    }
