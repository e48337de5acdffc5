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
    (api,) = [p for p in get_resolver().url_patterns if str(p.pattern) == "api/v1/backup/"]
    for pattern in api.url_patterns:
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
    assert len(api_routes()) == 9
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
