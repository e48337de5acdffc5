"""API keys: who may call the REST API.

Only a SHA-256 of each key is stored. A key is 256 random bits, so a slow
password hash (PBKDF2, argon2) would add latency to every request and protect
nothing: nobody can brute-force 2^256 candidates, however fast the hash. The
prefix is not secret; it names the key in lists and finds its row, and the
hash is then compared in constant time.

Each key has a scope (snapshots/api/scopes.py says which endpoint needs
which): read < operate < admin, each including the ones before it."""

from __future__ import annotations

from django.db import models


class ApiKey(models.Model):
    class Scope(models.TextChoices):
        READ = "read", "read: lists, details, downloads, metrics"
        OPERATE = "operate", "operate: read, and backups, verifies, schedules"
        ADMIN = "admin", "admin: operate, and restores, deletes"

    name = models.CharField(max_length=100, help_text="who or what uses this key")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    # A new key gets operate: it can back up but not overwrite an app or
    # delete its backups until someone grants that on purpose.
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.OPERATE)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.scope})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None
