"""Create the first admin user for the embedded setup, once.

If no superuser exists, create one named DJANGO_ADMIN_USER (default "admin")
with DJANGO_ADMIN_PASSWORD, or with a random password written to
DATA_DIR/admin-password (mode 0600), which is printed: the password never
goes to a log file.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first superuser if none exists (embedded setup)."

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        password_file = settings.DATA_DIR / "admin-password"
        if user_model.objects.filter(is_superuser=True).exists():
            if password_file.exists():
                self.stdout.write(f"Admin user exists; its first password is in {password_file}")
            return
        username = os.environ.get("DJANGO_ADMIN_USER", "admin")
        password = os.environ.get("DJANGO_ADMIN_PASSWORD") or secrets.token_urlsafe(16)
        user_model.objects.create_superuser(username=username, email="", password=password)
        if "DJANGO_ADMIN_PASSWORD" not in os.environ:
            password_file.touch(mode=0o600)
            password_file.write_text(password + "\n")
            self.stdout.write(
                f"Created admin user {username!r}; password saved in {password_file}: {password}"
            )
        else:
            self.stdout.write(f"Created admin user {username!r} with DJANGO_ADMIN_PASSWORD")
