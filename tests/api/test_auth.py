"""X-API-Key on every endpoint but health and the docs; keys stored hashed,
revocable, never echoed or logged."""

from __future__ import annotations

import hashlib
import logging

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from snapshots.models import ApiKey
from snapshots.services import api_keys
from snapshots.services.api_keys import create_api_key, revoke_api_key
from tests.api.conftest import API, envelope

BACKUP_ID = "backup_20260105_103000_3fa2c1"
TASK_ID = "5b0b8f1e-7d4c-4a55-9d4b-9b0b7a0e0a11"
PROTECTED = [
    ("get", "apps"),
    ("get", "apps/wordpress001"),
    ("get", "snapshots"),
    ("post", "snapshots"),
    ("get", f"snapshots/{BACKUP_ID}"),
    ("delete", f"snapshots/{BACKUP_ID}"),
    ("get", f"snapshots/{BACKUP_ID}/download"),
    ("post", f"snapshots/{BACKUP_ID}/verify"),
    ("post", f"restore/wordpress001/{BACKUP_ID}"),
    ("get", f"tasks/{TASK_ID}"),
    ("get", "storage"),
    ("get", "no/such/endpoint"),
]

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_needs_a_key(anonymous: APIClient, method: str, path: str) -> None:
    response = getattr(anonymous, method)(f"{API}/{path}")
    envelope(response, 401)
    assert "X-API-Key" in response.json()["message"]
    assert "X-API-Key" in response["WWW-Authenticate"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_a_wrong_key_is_refused_everywhere(method: str, path: str, api_key: str) -> None:
    client = APIClient()
    # Right prefix, wrong secret: found by prefix, refused by the hash.
    client.credentials(HTTP_X_API_KEY=api_key[:-4] + "AAAA")
    response = getattr(client, method)(f"{API}/{path}")
    assert envelope(response, 401) is None
    assert response.json()["message"] == "invalid or revoked API key"


@pytest.mark.parametrize("junk", ["", "x", "bk__", "bk_zzzz_" + "a" * 500, "Bearer abc"])
def test_junk_keys_are_refused(junk: str) -> None:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=junk)
    envelope(client.get(f"{API}/storage"), 401)


def test_health_schema_and_docs_need_no_key(anonymous: APIClient) -> None:
    assert anonymous.get("/api/v1/health").status_code == 200
    assert anonymous.get("/api/v1/schema").status_code == 200
    assert anonymous.get("/api/v1/docs").status_code == 200
    # A wrong key sent along (Swagger UI's Authorize) does not break the schema.
    anonymous.credentials(HTTP_X_API_KEY="bk_nope_nope")
    assert anonymous.get("/api/v1/schema").status_code == 200


def test_key_is_stored_hashed_and_works_until_revoked(api: APIClient, api_key: str) -> None:
    key = ApiKey.objects.get()
    assert api_key not in str(ApiKey.objects.values().get())
    assert key.key_hash == hashlib.sha256(api_key.encode()).hexdigest()
    assert api_key.startswith(f"bk_{key.prefix}_") and len(api_key) > 40
    assert key.last_used_at is None
    envelope(api.get(f"{API}/storage"), 200)
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert revoke_api_key(key) and not revoke_api_key(key)
    envelope(api.get(f"{API}/storage"), 401)


def test_keys_are_compared_in_constant_time(
    api: APIClient, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real = api_keys.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", spy)
    envelope(api.get(f"{API}/storage"), 200)
    assert calls == [(ApiKey.objects.get().key_hash, hashlib.sha256(api_key.encode()).hexdigest())]


def test_keys_never_appear_in_responses_or_logs(
    api: APIClient, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = [api.get(f"{API}/{path}").content for _, path in PROTECTED if "apps" not in path]
    wrong = APIClient()
    wrong.credentials(HTTP_X_API_KEY=api_key + "x")
    bodies.append(wrong.get(f"{API}/storage").content)
    secret = api_key.split("_", 2)[2]
    assert not any(secret.encode() in body for body in bodies)
    assert secret not in caplog.text


def test_apikey_command_creates_lists_and_revokes(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("apikey", "create", "ci pipeline")
    out, err = capsys.readouterr()
    raw_key = out.strip()
    key = ApiKey.objects.get(name="ci pipeline")
    assert raw_key.startswith(f"bk_{key.prefix}_") and "cannot be shown again" in err
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    envelope(client.get(f"{API}/storage"), 200)
    call_command("apikey", "list")
    listing = capsys.readouterr().out
    assert key.prefix in listing and "ci pipeline" in listing and "active" in listing
    assert raw_key.split("_", 2)[2] not in listing
    call_command("apikey", "revoke", key.prefix)
    assert "revoked" in capsys.readouterr().out
    envelope(client.get(f"{API}/storage"), 401)
    call_command("apikey", "list")
    assert "revoked" in capsys.readouterr().out


def test_apikey_command_refuses_unknown_prefix_and_empty_name() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no API key"):
        call_command("apikey", "revoke", "deadbeef")
    with pytest.raises(CommandError, match="needs a name"):
        call_command("apikey", "create", "  ")
    assert create_api_key("a")[0].prefix != create_api_key("b")[0].prefix
