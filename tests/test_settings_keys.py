"""Key settings are checked when the settings load: a malformed age
recipient, an unreadable or key-less identity file, an empty or unreadable
passphrase file stop startup with ImproperlyConfigured naming the variable,
never quoting a key, instead of failing every backup later with
`internal error (ValueError)` (issue 19, point 9). Django starts in a fresh
interpreter, as in test_env.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.age import generate_identity
from tests.test_env import _run_settings

SECRET = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"


def _refused(overrides: dict[str, str], tmp_path: Path, *messages: str) -> str:
    result = _run_settings(overrides, tmp_path)
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr, result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("age1notavalidkey", "not a valid age recipient"),
        ("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "age recipient"),
        ("ssh-ed25519 AAAAC3Nza", "not a valid age recipient"),
    ],
    ids=["garbage", "bad-checksum", "ssh-key"],
)
def test_a_malformed_recipient_stops_startup(value: str, message: str, tmp_path: Path) -> None:
    _refused({"BACKUP_AGE_RECIPIENTS": value}, tmp_path, "BACKUP_AGE_RECIPIENTS", message)


def test_one_bad_recipient_among_good_ones_is_named_by_position(tmp_path: Path) -> None:
    good = generate_identity()[1]
    _refused({"BACKUP_AGE_RECIPIENTS": f"{good},age1broken"}, tmp_path, "BACKUP_AGE_RECIPIENTS",
             "entry 2")  # fmt: skip


def test_a_secret_key_given_as_recipient_is_refused_without_echoing_it(tmp_path: Path) -> None:
    identity = generate_identity()[0]
    stderr = _refused({"BACKUP_AGE_RECIPIENTS": identity}, tmp_path, "BACKUP_AGE_RECIPIENTS",
                      "secret identity")  # fmt: skip
    assert identity not in stderr and identity[20:40] not in stderr


def test_an_unreadable_identity_file_stops_startup(tmp_path: Path) -> None:
    _refused({"BACKUP_AGE_IDENTITY_FILE": str(tmp_path / "missing.txt")}, tmp_path,
             "BACKUP_AGE_IDENTITY_FILE", "cannot be read")  # fmt: skip


@pytest.mark.parametrize(
    "content",
    ["# created: 2026-01-01\n# public key: age1xyz\n", "AGE-SECRET-KEY-1NOTAKEY\n", "hello\n"],
    ids=["no-identity", "malformed-identity", "not-a-key-file"],
)
def test_an_identity_file_without_a_valid_identity_stops_startup(
    content: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text(content)
    stderr = _refused({"BACKUP_AGE_IDENTITY_FILE": str(key_file)}, tmp_path,
                      "BACKUP_AGE_IDENTITY_FILE")  # fmt: skip
    assert "NOTAKEY" not in stderr and "hello" not in stderr


def test_an_unreadable_passphrase_file_stops_startup(tmp_path: Path) -> None:
    _refused({"BACKUP_PASSPHRASE_FILE": str(tmp_path / "nope")}, tmp_path,
             "BACKUP_PASSPHRASE_FILE", "cannot be read")  # fmt: skip


@pytest.mark.parametrize("content", ["", "\n", "   \n"], ids=["empty", "newline", "blank"])
def test_an_empty_passphrase_stops_startup(content: str, tmp_path: Path) -> None:
    """Set but empty would silently mean "no encryption"."""
    secret_file = tmp_path / "passphrase"
    secret_file.write_text(content)
    _refused({"BACKUP_PASSPHRASE_FILE": str(secret_file)}, tmp_path, "BACKUP_PASSPHRASE",
             "empty")  # fmt: skip


def test_valid_keys_start(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# created: now\n# public key: {recipient}\n{identity}\n")
    result = _run_settings(
        {"BACKUP_AGE_RECIPIENTS": f"{recipient}, {generate_identity()[1]}",
         "BACKUP_AGE_IDENTITY_FILE": str(key_file)},
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    result = _run_settings({"BACKUP_PASSPHRASE_FILE": str(passphrase)}, tmp_path)
    assert result.returncode == 0, result.stderr
