"""python manage.py apikey create NAME | list | revoke PREFIX

The key is printed once, at creation; only its SHA-256 is stored."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from snapshots.models import ApiKey
from snapshots.services.api_keys import ApiKeyError, create_api_key, find_api_key, revoke_api_key


class Command(BaseCommand):
    help = "Create, list and revoke API keys for the REST API (header X-API-Key)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key and print it (once)")
        create.add_argument("name", help="who or what uses the key")
        sub.add_parser("list", help="list keys (never the keys themselves)")
        revoke = sub.add_parser("revoke", help="revoke a key: it stops working at once")
        revoke.add_argument("prefix", help="the key's prefix, as `list` shows it")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except ApiKeyError as exc:
            raise CommandError(str(exc)) from None

    def _create(self, options: dict[str, Any]) -> None:
        key, raw_key = create_api_key(options["name"])
        # The key alone on stdout, so `KEY=$(manage.py apikey create ci)` works;
        # the advice goes to stderr.
        self.stdout.write(raw_key)
        self.stderr.write(
            f"created API key {key.name!r} (prefix {key.prefix}); store it now, it cannot be "
            "shown again"
        )

    def _list(self, options: dict[str, Any]) -> None:
        for key in ApiKey.objects.order_by("created_at"):
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            state = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
            self.stdout.write(
                f"{key.prefix}  {key.name:<30} created {key.created_at:%Y-%m-%d %H:%M}  "
                f"last used {used:<16}  {state}"
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        key = find_api_key(options["prefix"])
        if revoke_api_key(key):
            self.stdout.write(f"revoked {key.prefix} ({key.name})")
        else:
            self.stdout.write(f"{key.prefix} ({key.name}) was already revoked")
