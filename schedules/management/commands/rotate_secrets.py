"""python manage.py rotate_secrets: re-encrypt every stored notification
target list with the first key of BACKUP_SECRET_KEYS (then the old keys
can be dropped). A list no key opens is reported and left as it is."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from schedules.secrets import rotate_all


class Command(BaseCommand):
    help = "Re-encrypt the stored notification targets with the first BACKUP_SECRET_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        result = rotate_all()
        self.stdout.write(f"re-encrypted {result.rotated} target list(s) with the first key")
        for where in result.unreadable:
            self.stderr.write(f"{where}: cannot be decrypted with the configured keys; left as is")
        if result.unreadable:
            raise CommandError(
                f"{len(result.unreadable)} list(s) could not be decrypted: add the key they were "
                "written with to BACKUP_SECRET_KEYS and run again, or set those targets anew"
            )
