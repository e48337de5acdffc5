"""The OpenAPI schema: generated without warnings or errors, every endpoint
in it, and Swagger UI served with local assets."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, get_resolver
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def api_routes() -> set[str]:
    """'/api/v1/backup/snapshots/{backup_id}' for every route of the API."""
    routes = set()
    # Three includes share the prefix: schedules', drills', then snapshots' (with its catch-all).
    includes = [p for p in get_resolver().url_patterns if str(p.pattern) == "api/v1/backup/"]
    assert len(includes) == 3
    for pattern in (route for include in includes for route in include.url_patterns):
        assert isinstance(pattern, URLPattern)
        if pattern.name == "no-such-endpoint":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        routes.add(f"/api/v1/backup/{path}")
    return routes


def test_schema_validates_without_warnings(tmp_path) -> None:
    out = tmp_path / "schema.yaml"
    # Raises SchemaGenerationError on any warning or error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    missing = api_routes() - set(schema["paths"])
    assert not missing, f"endpoints missing from the schema: {missing}"
    assert len(api_routes()) == 21  # + hosts, hosts/{host_id}/refresh (fleet)
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
    }  # fmt: skip
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/backup/"):
            continue
        for method, operation in operations.items():
            assert operation["security"] == [{"ApiKey": []}], (method, path)
            assert "401" in operation["responses"], (method, path)


def test_swagger_ui_uses_local_assets(anonymous: APIClient) -> None:
    response = anonymous.get("/api/v1/docs")
    html = response.content.decode()
    assert response.status_code == 200 and "swagger-ui" in html
    assert not re.search(r"https?://(?!127\.0\.0\.1|localhost|testserver)", html.split("<body")[1])
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert assets, html
    from django.contrib.staticfiles import finders

    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset


def test_schema_keeps_the_platform_uis_verify_and_restore_fields(tmp_path) -> None:
    """The UI reads these names with these types: counts are integers."""
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    components = schema["components"]["schemas"]

    def types(name: str) -> dict[str, str]:
        return {k: v.get("type", "") for k, v in components[name]["properties"].items()}

    report = components["VerifyReport"]
    assert report["properties"]["contains"] == {"$ref": "#/components/schemas/VerifyContains"}
    assert types("VerifyReport")["snapshot_id"] == "string"
    assert types("VerifyContains") == {
        "volumes": "integer", "databases": "integer", "config_files": "integer",
    }  # fmt: skip
    assert {"contains", "snapshot_id"} <= set(report["required"])
    restore = types("RestoreResult")
    assert restore["app_id"] == restore["snapshot_id"] == "string"
    assert restore["restored_volumes"] == "integer"
    assert restore["database_restored"] == "boolean"
    assert restore["duration_seconds"] == "number"
    assert restore["restored_volume_names"] == restore["restored_databases"] == "array"
    required = set(components["RestoreResult"]["required"])
    assert {"app_id", "snapshot_id", "restored_volumes", "database_restored"} <= required
    assert "duration_seconds" in required
    responses = schema["paths"]["/api/v1/backup/restore/{app_id}/{backup_id}"]["post"]["responses"]
    for status in ("200", "500"):  # completed; failed under ?wait=true
        body = responses[status]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/RestoreTaskEnvelope"}, status
