"""Target lists encrypted at rest: round trip, rotation with
rotate_secrets, keys checked at startup (a real manage.py process), masked
display, scrubbing of free text and of Apprise's own log lines."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from schedules.models import AppNotificationTargets, Schedule
from schedules.secrets import (
    SecretsUnavailable,
    decrypt_targets,
    encrypt_targets,
    mask_target,
    scrub,
    validate_target,
)
from tests.conftest import REPO_ROOT

URL = "json://admin:pw-Zq81xKd@hooks.example.com:8443/hook/tok-9Vf2LmQa"


def test_round_trip_and_empty() -> None:
    assert encrypt_targets([]) == "" and decrypt_targets("") == []
    token = encrypt_targets([URL, "ntfys://topic-Sec4et"])
    assert "pw-Zq81xKd" not in token and "tok-9Vf2LmQa" not in token
    assert decrypt_targets(token) == [URL, "ntfys://topic-Sec4et"]


def test_a_token_no_key_opens_is_a_clear_error(settings) -> None:
    token = encrypt_targets([URL])
    settings.SECRET_KEY = "another secret key entirely"
    with pytest.raises(SecretsUnavailable, match="rotate_secrets"):
        decrypt_targets(token)


@pytest.mark.django_db
def test_rotation_moves_every_list_to_the_new_key(settings) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.BACKUP_SECRET_KEYS = [old]
    schedule = Schedule.objects.create(
        app_id="app1", notification_targets_encrypted=encrypt_targets([URL])
    )
    AppNotificationTargets.objects.create(app_id="app1", targets_encrypted=encrypt_targets([URL]))
    settings.BACKUP_SECRET_KEYS = [new, old]  # new first: it encrypts, both decrypt
    call_command("rotate_secrets")
    settings.BACKUP_SECRET_KEYS = [new]  # the old key dropped
    schedule.refresh_from_db()
    assert decrypt_targets(schedule.notification_targets_encrypted) == [URL]
    app = AppNotificationTargets.objects.get(app_id="app1")
    assert decrypt_targets(app.targets_encrypted) == [URL]
    assert Fernet(new.encode()).decrypt(app.targets_encrypted.encode())


@pytest.mark.django_db
def test_rotation_reports_a_list_it_cannot_open(settings) -> None:
    settings.BACKUP_SECRET_KEYS = [Fernet.generate_key().decode()]
    AppNotificationTargets.objects.create(app_id="app1", targets_encrypted=encrypt_targets([URL]))
    settings.BACKUP_SECRET_KEYS = [Fernet.generate_key().decode()]
    settings.SECRET_KEY = "changed too"
    before = AppNotificationTargets.objects.get(app_id="app1").targets_encrypted
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_secrets")
    assert AppNotificationTargets.objects.get(app_id="app1").targets_encrypted == before


def test_a_malformed_key_stops_startup_naming_the_variable() -> None:
    bad = "not-a-fernet-key-but-secret-ish-text"
    env = {"PATH": "/usr/bin:/bin", "BACKUP_SECRET_KEYS": f"{Fernet.generate_key().decode()},{bad}"}
    env["DJANGO_SECRET_KEY"] = "x" * 50
    env["BACKUP_DATA_DIR"] = str(REPO_ROOT / "var" / "test-secrets-startup")
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "BACKUP_SECRET_KEYS: key 2 of 2 is not a Fernet key" in done.stderr
    assert bad not in done.stderr and bad not in done.stdout


@pytest.mark.parametrize(
    "url, shown",
    [
        (URL, "json://…@hooks.example.com:8443/…"),
        ("mailto://user:pass@smtp.gmail.com?to=a@b.c", "mailto://…@smtp.gmail.com/…"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "slack://…"),
        ("tgram://123456789:AABBccDDeeFF/12345", "tgram://…"),
        ("ntfys://my-secret-topic", "ntfys://…"),
        ("json://127.0.0.1:8080", "json://127.0.0.1:8080"),
        ("json://[::1]:9000/x", "json://[::1]:9000/…"),
        ("no url at all", "…"),
    ],
)
def test_mask_target_keeps_no_secret(url: str, shown: str) -> None:
    assert mask_target(url) == shown


def test_scrub_removes_every_piece_of_the_url() -> None:
    text = (
        f"failed to send to {URL}: POST /hook/tok-9Vf2LmQa 401; login admin:pw-Zq81xKd; "
        "quoted pw-Zq81xKd"
    )
    cleaned = scrub(text, [URL])
    for secret in ("pw-Zq81xKd", "tok-9Vf2LmQa"):
        assert secret not in cleaned
    assert "hooks.example.com" in cleaned and "401" in cleaned
    # A password with characters a URL must encode, seen decoded in a message.
    encoded = "mailto://bob:p%40ss%2Fw0rd-X@smtp.example.com"
    assert "p@ss/w0rd-X" not in scrub("login bob / p@ss/w0rd-X refused", [encoded])


def test_validate_target_messages_are_secret_free(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    validate_target("json://127.0.0.1:8080/hook")  # fine: no error
    for url in ("nosuch://u:pw-Zq81xKd@h.example.com", "mailto://u:pw-Zq81xKd@"):
        with pytest.raises(ValueError) as raised:
            validate_target(url)
        assert "pw-Zq81xKd" not in str(raised.value)
    # Apprise did log why it refused the mailto URL, through the filter.
    apprise_lines = [r.getMessage() for r in caplog.records if r.name == "apprise"]
    assert apprise_lines
    assert all("pw-Zq81xKd" not in line and "p...d" not in line for line in apprise_lines)
    assert "pw-Zq81xKd" not in caplog.text


def test_the_apprise_log_filter_masks_urls_in_any_record(caplog: pytest.LogCaptureFixture) -> None:
    import schedules.notify  # noqa: F401 - installs the filter

    caplog.set_level(logging.INFO)
    logging.getLogger("apprise").warning("Loaded URL: %s", URL)
    assert "pw-Zq81xKd" not in caplog.text and "tok-9Vf2LmQa" not in caplog.text
    assert "json://…@hooks.example.com:8443/…" in caplog.text
