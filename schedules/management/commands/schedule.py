"""python manage.py schedule list [--app APP] | show ID | create APP [--host-id HOST] [options]
| update ID [options] | enable ID | disable ID | run ID | delete ID

The same services as the API and the admin (the beat projection follows).
Notification target URLs are taken with --target (repeat it) and never
printed back: `show` lists them masked."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.errors import AppOnManyHosts
from schedules import selectors, services
from schedules.models import Schedule
from schedules.secrets import masked
from schedules.selectors import describe
from snapshots.selectors import NotFound

INT_OPTIONS = (
    "weekday", "day_of_month", "jitter_seconds", "retention_days", "keep_last", "keep_daily",
    "keep_weekly", "keep_monthly", "keep_yearly",
)  # fmt: skip
TEXT_OPTIONS = (
    "host_id", "name", "frequency", "time", "timezone", "cron_expression", "backup_type",
    "storage_location", "consistency",
)  # fmt: skip


def _add_schedule_options(parser: CommandParser) -> None:
    for name in TEXT_OPTIONS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name)
    # --host-id: the app's host, needed when the app id is on several ("" clears it).
    for name in INT_OPTIONS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int)
    parser.add_argument("--cron", dest="cron_expression", help="five fields, quoted")
    parser.add_argument("--disabled", dest="enabled", action="store_false", default=None)
    # dest "action" is the subcommand's: the schedule's action is schedule_action.
    parser.add_argument("--schedule-action", dest="schedule_action", choices=["backup", "drill"],
                        help="drill: a restore drill of the app's latest snapshot")  # fmt: skip
    parser.add_argument("--encrypt", choices=["yes", "no", "default"])
    parser.add_argument("--notify-on-success", choices=["yes", "no"])
    parser.add_argument("--target", dest="targets", action="append",
                        help="an Apprise URL (repeatable); --target '' clears them")  # fmt: skip


def _values(options: dict[str, Any]) -> dict[str, Any]:
    values = {n: options[n] for n in (*TEXT_OPTIONS, *INT_OPTIONS) if options.get(n) is not None}
    if options.get("enabled") is not None:
        values["enabled"] = options["enabled"]
    if options.get("schedule_action"):
        values["action"] = options["schedule_action"]
    if options.get("encrypt"):
        values["encrypt"] = {"yes": True, "no": False, "default": None}[options["encrypt"]]
    if options.get("notify_on_success"):
        values["notify_on_success"] = options["notify_on_success"] == "yes"
    if options.get("targets") is not None:
        values["notification_targets"] = [url for url in options["targets"] if url]
    return values


class Command(BaseCommand):
    help = "List, create, change, enable, disable, run and delete backup schedules."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="schedules with next run, last run, last result")
        listing.add_argument("--app", dest="app_id")
        listing.add_argument("--json", action="store_true")
        show = sub.add_parser("show", help="one schedule in full (targets masked)")
        show.add_argument("id")
        create = sub.add_parser("create", help="a new schedule for APP")
        create.add_argument("app_id")
        _add_schedule_options(create)
        update = sub.add_parser("update", help="change a schedule")
        update.add_argument("id")
        _add_schedule_options(update)
        for action, text in (("enable", "enable"), ("disable", "disable"),
                             ("run", "run now (a backup with its settings)"),
                             ("delete", "delete (its snapshots stay)")):  # fmt: skip
            sub.add_parser(action, help=text).add_argument("id")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except services.ScheduleInvalid as exc:
            raise CommandError(
                "; ".join(f"{field}: {message}" for field, message in exc.errors.items())
            ) from None
        except (NotFound, services.AlreadyFiring, AppOnManyHosts) as exc:
            raise CommandError(str(exc)) from None

    def _line(self, schedule: Schedule) -> str:
        state = selectors.schedule_state(schedule)
        next_run = f"{state.next_run_at:%Y-%m-%d %H:%M}Z" if state.next_run_at else "-"
        last = f"{state.last_run_at:%Y-%m-%d %H:%M}Z" if state.last_run_at else "never"
        flag = "on " if schedule.enabled else "off"
        return (f"{schedule.pk:>4} {flag} {schedule.app_id:<24} {describe(schedule):<40} "
                f"next {next_run:<18} last {last:<18} {state.last_result or '-'}")  # fmt: skip

    def _list(self, options: dict[str, Any]) -> None:
        rows = selectors.list_schedules(options.get("app_id"))
        if options["json"]:
            out = []
            for schedule in rows:
                state = selectors.schedule_state(schedule)
                out.append({"id": schedule.pk, "app_id": schedule.app_id,
                            "enabled": schedule.enabled, "when": describe(schedule),
                            "next_run_at": state.next_run_at, "last_run_at": state.last_run_at,
                            "last_result": state.last_result})  # fmt: skip
            self.stdout.write(json.dumps(out, default=str))
            return
        for schedule in rows:
            self.stdout.write(self._line(schedule))

    def _show(self, options: dict[str, Any]) -> None:
        schedule = selectors.get_schedule(options["id"])
        self.stdout.write(self._line(schedule))
        policy = {n: getattr(schedule, n) for n in services.POLICY_FIELDS if getattr(schedule, n)}
        self.stdout.write(f"  storage {schedule.storage_location}, type {schedule.backup_type}, "
                          f"retention {policy or 'none'}")  # fmt: skip
        self.stdout.write(f"  targets {masked(schedule.notification_targets_encrypted) or '-'}")

    def _create(self, options: dict[str, Any]) -> None:
        schedule = services.create_schedule({"app_id": options["app_id"]} | _values(options))
        self.stdout.write(f"created schedule {schedule.pk}: {describe(schedule)}")

    def _update(self, options: dict[str, Any]) -> None:
        schedule = services.update_schedule(selectors.get_schedule(options["id"]),
                                            _values(options))  # fmt: skip
        self.stdout.write(f"updated schedule {schedule.pk}: {describe(schedule)}")

    def _enable(self, options: dict[str, Any]) -> None:
        services.set_enabled(selectors.get_schedule(options["id"]), True)
        self.stdout.write(f"enabled schedule {options['id']}")

    def _disable(self, options: dict[str, Any]) -> None:
        services.set_enabled(selectors.get_schedule(options["id"]), False)
        self.stdout.write(f"disabled schedule {options['id']}")

    def _run(self, options: dict[str, Any]) -> None:
        firing = services.run_now(selectors.get_schedule(options["id"]))
        self.stdout.write(f"queued a run of schedule {options['id']} (firing {firing.pk})")

    def _delete(self, options: dict[str, Any]) -> None:
        services.delete_schedule(selectors.get_schedule(options["id"]))
        self.stdout.write(f"deleted schedule {options['id']}")
