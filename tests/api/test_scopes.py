"""API key scopes: read < operate < admin. Every route of the API declares the
scope of each of its methods (the resolver is walked, so a new endpoint
without a declaration fails here), a key of each scope is let in or refused
with a 403 envelope on every endpoint, and the product's choices (which
endpoint needs which scope) are pinned for the endpoints known today."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from snapshots.api.scopes import declared_scope
from snapshots.api.views.base import ApiView, NoSuchEndpoint
from snapshots.models import ApiKey
from snapshots.services.api_keys import SCOPE_ORDER, create_api_key
from tests.api.conftest import envelope

# Path parameters that name nothing: an allowed call ends in 400/404, never in work.
PARAMETER_VALUES = {
    "app_id": "nosuchapp",
    "backup_id": "backup_20260105_103000_3fa2c1",
    "schedule_id": "999999",
    "task_id": str(uuid.UUID(int=0)),
    "host_id": "nosuchhost",
}

# The product's decisions (issue 16): pinned, so a changed declaration is noticed.
EXPECTED = {
    ("backup-api:apps", "get"): "read",
    ("backup-api:app", "get"): "read",
    ("backup-api:snapshots", "get"): "read",
    ("backup-api:snapshots", "post"): "operate",
    ("backup-api:snapshot", "get"): "read",
    ("backup-api:snapshot", "delete"): "admin",
    ("backup-api:download", "get"): "read",
    ("backup-api:verify", "post"): "operate",
    ("backup-api:restore", "post"): "admin",
    ("backup-api:task", "get"): "read",
    ("backup-api:storage", "get"): "read",
    ("backup-api:hosts", "get"): "read",
    ("backup-api:host-refresh", "post"): "operate",
    ("schedules-api:schedules", "get"): "read",
    ("schedules-api:schedules", "post"): "operate",
    ("schedules-api:schedule", "get"): "read",
    ("schedules-api:schedule", "patch"): "operate",
    ("schedules-api:schedule", "delete"): "operate",
    ("schedules-api:schedule-run", "post"): "operate",
    ("schedules-api:retention-preview", "get"): "read",
    ("schedules-api:app-notifications", "get"): "read",
    ("schedules-api:app-notifications", "put"): "operate",
    ("schedules-api:notifications-test", "post"): "operate",
    ("schedules-api:notifications", "get"): "read",
    # Restore drills (issue 17).
    ("drills-api:drill", "post"): "operate",
    ("drills-api:app-drill", "post"): "operate",
    ("drills-api:drills", "get"): "read",
}


@dataclass(frozen=True)
class Endpoint:
    name: str  # namespaced route name
    method: str
    view: type[ApiView]
    parameters: tuple[str, ...]

    def url(self) -> str:
        return reverse(self.name, kwargs={p: PARAMETER_VALUES[p] for p in self.parameters})


def _walk(patterns: list, namespace: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern):
            yield f"{namespace}{entry.name}", entry


def api_endpoints() -> list[Endpoint]:
    """Every (route, method) an API view handles, from the URL resolver."""
    found: list[Endpoint] = []
    for name, pattern in _walk(get_resolver().url_patterns):
        view = getattr(pattern.callback, "view_class", None)
        if view is None or not issubclass(view, ApiView) or view is NoSuchEndpoint:
            continue
        parameters = tuple(pattern.pattern.converters) or tuple(pattern.pattern.regex.groupindex)
        for method in view.http_method_names:
            if method not in ("options", "head") and hasattr(view, method):
                found.append(Endpoint(name, method, view, parameters))
    return found


ENDPOINTS = api_endpoints()


def test_the_walk_finds_the_api() -> None:
    names = {(e.name, e.method) for e in ENDPOINTS}
    assert set(EXPECTED) <= names, set(EXPECTED) - names


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.name}")
def test_every_api_endpoint_declares_its_scope(endpoint: Endpoint) -> None:
    scope = declared_scope(endpoint.view, endpoint.method)
    assert scope in SCOPE_ORDER, (
        f"{endpoint.view.__name__}.{endpoint.method} declares no scope: add "
        f'required_scope = {{"{endpoint.method}": READ|OPERATE|ADMIN}} to the view'
    )
    if (endpoint.name, endpoint.method) in EXPECTED:
        assert scope == EXPECTED[(endpoint.name, endpoint.method)]


def _client(scope: str) -> tuple[APIClient, ApiKey]:
    key, raw = create_api_key(f"{scope} key", scope=scope)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client, key


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.name}")
def test_each_scope_is_let_in_or_refused_on_every_endpoint(endpoint: Endpoint) -> None:
    required = declared_scope(endpoint.view, endpoint.method)
    assert required is not None
    for scope in SCOPE_ORDER:
        client, _ = _client(scope)
        response = getattr(client, endpoint.method)(endpoint.url(), {}, format="json")
        if SCOPE_ORDER.index(scope) >= SCOPE_ORDER.index(required):
            assert response.status_code not in (401, 403), (scope, response.content)
        else:
            data = envelope(response, 403)
            assert data == {"required_scope": required, "key_scope": scope}
            message = response.json()["message"]
            assert f"needs {required}" in message and scope in message


@pytest.mark.django_db
def test_a_refused_call_does_nothing() -> None:
    """A read key's backup request is refused before the view runs: no run row."""
    from snapshots.models import Run

    client, _ = _client("read")
    response = client.post(reverse("backup-api:snapshots"), {"app_id": "x"}, format="json")
    assert envelope(response, 403)["required_scope"] == "operate"
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_view_without_a_declaration_is_refused_for_every_key(rf_view_without_scope: str) -> None:
    client, _ = _client("admin")
    data = envelope(client.get(rf_view_without_scope), 403)
    assert data == {"required_scope": None, "key_scope": "admin"}


@pytest.fixture
def rf_view_without_scope(settings: pytest.FixtureRequest) -> str:
    """A route to an ApiView that forgot its declaration (a test-only URLconf)."""
    settings.ROOT_URLCONF = "tests.api.undeclared_urls"
    return "/undeclared"


@pytest.mark.django_db
def test_keys_default_to_operate() -> None:
    assert create_api_key("no scope given")[0].scope == "operate"
    call_command("apikey", "create", "cli, no scope")
    assert ApiKey.objects.get(name="cli, no scope").scope == "operate"


@pytest.mark.django_db
def test_apikey_command_sets_and_shows_the_scope(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("apikey", "create", "reporting", "--scope", "read")
    raw = capsys.readouterr().out.strip()
    key = ApiKey.objects.get(name="reporting")
    assert key.scope == "read"
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    envelope(client.delete(reverse("backup-api:snapshot", args=["backup_x"])), 403)
    call_command("apikey", "scope", key.prefix, "admin")
    assert "read -> admin" in capsys.readouterr().out
    envelope(client.delete(reverse("backup-api:snapshot", args=["backup_x"])), 404)
    call_command("apikey", "list")
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if key.prefix in ln]
    assert " admin " in line
    with pytest.raises(CommandError):
        call_command("apikey", "create", "bad", "--scope", "root")
    assert not ApiKey.objects.filter(name="bad").exists()


@pytest.mark.django_db
def test_admin_shows_and_sets_the_scope(admin_client: Client) -> None:
    admin_client.post("/admin/snapshots/apikey/add/", {"name": "dash", "scope": "read"})
    key = ApiKey.objects.get(name="dash")
    assert key.scope == "read"
    admin_client.post("/admin/snapshots/apikey/add/", {"name": "plain"})
    assert ApiKey.objects.get(name="plain").scope == "operate"
    listing = admin_client.get("/admin/snapshots/apikey/").content.decode()
    assert "read" in listing and "operate" in listing
    response = admin_client.post(
        f"/admin/snapshots/apikey/{key.pk}/change/", {"scope": "admin"}, follow=True
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.scope == "admin" and key.name == "dash"


@pytest.mark.django_db(transaction=True)
def test_keys_made_before_scopes_keep_full_rights() -> None:
    """The data migration: every key that existed before 0007 becomes admin."""
    executor = MigrationExecutor(connection)
    before = [("snapshots", "0006_offsite_copies")]
    latest = executor.loader.graph.leaf_nodes("snapshots")
    try:
        executor.migrate(before)
        old_apps = executor.loader.project_state(before).apps
        old_apps.get_model("snapshots", "ApiKey").objects.create(
            name="old", prefix="0ld0ld00", key_hash="0" * 64
        )
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)
    assert ApiKey.objects.get(name="old").scope == "admin"
    assert create_api_key("new")[0].scope == "operate"


@pytest.mark.django_db
def test_the_schema_tells_each_operations_scope(api: APIClient) -> None:
    schema = Client().get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    operations = {
        op["operationId"]: op for item in schema["paths"].values() for op in item.values()
    }
    assert "scope `admin`" in operations["restore_create"]["description"]
    assert "scope `read`" in operations["snapshots_list"]["description"]
    assert "scope `operate`" in operations["snapshots_create"]["description"]


@pytest.mark.django_db
def test_head_needs_what_get_needs_and_unhandled_methods_stay_405() -> None:
    read, _ = _client("read")
    url = reverse("backup-api:snapshot", args=["backup_20260105_103000_3fa2c1"])
    assert read.head(url).status_code == 404  # let in: GET is read
    assert read.options(reverse("backup-api:restore", args=["a", "b"])).status_code == 200
    assert read.put(url, {}, format="json").status_code == 405  # no handler: nothing to guard
    assert read.delete(url).status_code == 403
