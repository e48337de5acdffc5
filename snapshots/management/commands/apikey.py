"""python manage.py apikey create NAME [--scope read|operate|admin] | list |
scope PREFIX SCOPE | revoke PREFIX

The key is printed once, at creation; only its SHA-256 is stored. A key
created without --scope gets operate."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from snapshots.models import ApiKey
from snapshots.services.api_keys import (
    SCOPE_ORDER,
    ApiKeyError,
    create_api_key,
    find_api_key,
    revoke_api_key,
    set_api_key_scope,
)

SCOPE_HELP = (
    "read (lists, details, downloads, metrics), operate (read + backups, verifies, "
    "schedules) or admin (operate + restores, deletes)"
)


class Command(BaseCommand):
    help = "Create, list and revoke API keys for the REST API (header X-API-Key)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key and print it (once)")
        create.add_argument("name", help="who or what uses the key")
        create.add_argument(
            "--scope", default="operate", choices=SCOPE_ORDER, help=f"{SCOPE_HELP}; default operate"
        )
        sub.add_parser("list", help="list keys (never the keys themselves)")
        scope = sub.add_parser("scope", help="change a key's scope (from its next request)")
        scope.add_argument("prefix", help="the key's prefix, as `list` shows it")
        scope.add_argument("scope", choices=SCOPE_ORDER, help=SCOPE_HELP)
        revoke = sub.add_parser("revoke", help="revoke a key: it stops working at once")
        revoke.add_argument("prefix", help="the key's prefix, as `list` shows it")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except ApiKeyError as exc:
            raise CommandError(str(exc)) from None

    def _create(self, options: dict[str, Any]) -> None:
        key, raw_key = create_api_key(options["name"], options["scope"])
        # The key alone on stdout, so `KEY=$(manage.py apikey create ci)` works;
        # the advice goes to stderr.
        self.stdout.write(raw_key)
        self.stderr.write(
            f"created API key {key.name!r} (prefix {key.prefix}, scope {key.scope}); store it "
            "now, it cannot be shown again"
        )

    def _list(self, options: dict[str, Any]) -> None:
        for key in ApiKey.objects.order_by("created_at"):
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            state = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
            self.stdout.write(
                f"{key.prefix}  {key.name:<30} {key.scope:<7}  "
                f"created {key.created_at:%Y-%m-%d %H:%M}  last used {used:<16}  {state}"
            )

    def _scope(self, options: dict[str, Any]) -> None:
        key = find_api_key(options["prefix"])
        before = key.scope
        set_api_key_scope(key, options["scope"])
        self.stdout.write(f"{key.prefix} ({key.name}): scope {before} -> {key.scope}")

    def _revoke(self, options: dict[str, Any]) -> None:
        key = find_api_key(options["prefix"])
        if revoke_api_key(key):
            self.stdout.write(f"revoked {key.prefix} ({key.name})")
        else:
            self.stdout.write(f"{key.prefix} ({key.name}) was already revoked")
