"""Strict environment parsing: a malformed value is a clear startup error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from backup_project.env import Env

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("raw", ["1", "true", "YES", " on "])
def test_bool_true(raw: str) -> None:
    assert Env({"X": raw}).bool("X", False) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off"])
def test_bool_false(raw: str) -> None:
    assert Env({"X": raw}).bool("X", True) is False


def test_bool_typo_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG must be a boolean"):
        Env({"DJANGO_DEBUG": "ture"}).bool("DJANGO_DEBUG", False)


def test_missing_values_take_defaults() -> None:
    env = Env({})
    assert env.bool("B", True) is True
    assert env.int("I", 7) == 7
    assert env.list("L", ["a"]) == ["a"]
    assert env.url("U", "redis://x") == "redis://x"


def test_int_rejects_junk_and_too_small() -> None:
    with pytest.raises(ImproperlyConfigured, match="T must be an integer"):
        Env({"T": "10s"}).int("T", 1)
    with pytest.raises(ImproperlyConfigured, match="T must be >= 1"):
        Env({"T": "0"}).int("T", 1, minimum=1)


def test_url_checks_scheme_host_and_port_without_echoing_secrets() -> None:
    secret = "hunter2-secret"
    with pytest.raises(ImproperlyConfigured) as info:
        Env({"U": f"http://u:{secret}@h/0"}).url("U", schemes=("redis",))
    assert "redis://" in str(info.value) and secret not in str(info.value)
    with pytest.raises(ImproperlyConfigured, match="no host"):
        Env({"U": "redis://"}).url("U", schemes=("redis",))
    with pytest.raises(ImproperlyConfigured, match="bad port"):
        Env({"U": f"redis://:{secret}@h:99999/0"}).url("U", schemes=("redis",))
    assert Env({"U": "redis://h:6379/1"}).url("U", schemes=("redis",)) == "redis://h:6379/1"


def test_file_variant_reads_secret_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("s3cret\n")
    assert Env({"KEY_FILE": str(secret_file)}).str("KEY") == "s3cret"


def test_file_variant_errors_are_clear() -> None:
    with pytest.raises(ImproperlyConfigured, match="KEY_FILE='/nonexistent/k' cannot be read"):
        Env({"KEY_FILE": "/nonexistent/k"}).str("KEY")
    with pytest.raises(ImproperlyConfigured, match="both set"):
        Env({"KEY": "a", "KEY_FILE": "/x"}).str("KEY")


def _run_settings(env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Load the real settings in a fresh interpreter with only ENV_OVERRIDES."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO", "DATABASE", "CELERY", "BACKUP"))
    }
    env |= {"BACKUP_DATA_DIR": str(tmp_path / "var"), **env_overrides}
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'],"
        " s.BACKUP_ROOT, s.CELERY_BROKER_URL, s.CELERY_EMBEDDED_BROKER)"
    )
    env["DJANGO_SETTINGS_MODULE"] = "backup_project.settings"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def test_embedded_defaults_need_no_external_service(tmp_path: Path) -> None:
    result = _run_settings({}, tmp_path)
    assert result.returncode == 0, result.stderr
    engine, name, backup_root, broker, embedded = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert name == str(tmp_path / "var" / "db.sqlite3")
    assert backup_root == str(tmp_path / "var" / "backups")
    assert (broker, embedded) == ("filesystem://", "True")


def test_production_settings_from_environment(tmp_path: Path) -> None:
    result = _run_settings(
        {
            "DATABASE_URL": "postgres://app:pw@db:5432/backups",
            "CELERY_BROKER_URL": "redis://redis:6379/0",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    engine, name, _, broker, embedded = result.stdout.split()
    assert engine == "django.db.backends.postgresql" and name == "backups"
    assert (broker, embedded) == ("redis://redis:6379/0", "False")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DJANGO_DEBUG": "ture"}, "DJANGO_DEBUG must be a boolean"),
        ({"DATABASE_URL": "mysql://x@h/db"}, "DATABASE_URL is not a valid URL"),
        ({"CELERY_BROKER_URL": "redis//nohost"}, "CELERY_BROKER_URL is not a valid URL"),
        (
            {"CELERY_TASK_SOFT_TIME_LIMIT": "100", "CELERY_TASK_TIME_LIMIT": "50"},
            "must be greater than",
        ),
    ],
)
def test_bad_settings_stop_startup_with_a_clear_error(
    overrides: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = _run_settings(overrides, tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_the_embedded_database_lets_threads_and_processes_write_without_failing(
    tmp_path: Path,
) -> None:
    """The worker's heartbeat and inventory threads write while a restore
    does: a deferred SQLite transaction that read first then failed at once
    with "database is locked" (the served end-to-end restore on the embedded
    default). Transactions take the write lock at BEGIN (so they wait on the
    timeout), in WAL mode. Two processes each write in transactions that
    read first, at the same time: none fails."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO", "DATABASE", "CELERY", "BACKUP"))
    }
    env |= {"BACKUP_DATA_DIR": str(tmp_path / "var"),
            "DJANGO_SETTINGS_MODULE": "backup_project.settings"}  # fmt: skip
    setup = "import django; django.setup(); from django.db import connection, transaction;"
    create = setup + (
        "c = connection.cursor(); c.execute('CREATE TABLE t (n INTEGER)');"
        "print(c.execute('PRAGMA journal_mode').fetchone()[0])"
    )
    made = subprocess.run([sys.executable, "-c", create], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["wal"]
    writer = setup + (
        "import time\n"
        "for i in range(150):\n"
        "    with transaction.atomic():\n"
        "        c = connection.cursor(); c.execute('SELECT COUNT(*) FROM t').fetchone()\n"
        "        time.sleep(0.002); c.execute('INSERT INTO t VALUES (1)')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer], cwd=REPO_ROOT, env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
