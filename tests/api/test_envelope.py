"""The envelope on every answer, errors included."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import API, envelope

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["nope", "snapshots/", "snapshots/../../etc/passwd", "snapshots/a/b/c", ""]
)
def test_unknown_paths_get_a_404_envelope(api: APIClient, path: str) -> None:
    response = api.get(f"{API}/{path}")
    envelope(response, 404)
    assert "no endpoint" in response.json()["message"]


def test_wrong_method_gets_a_405_envelope(api: APIClient) -> None:
    response = api.put(f"{API}/storage", {}, format="json")
    envelope(response, 405)
    assert "PUT" in response.json()["message"]


def test_malformed_json_gets_a_400_envelope(api: APIClient) -> None:
    response = api.post(f"{API}/snapshots", "{not json", content_type="application/json")
    envelope(response, 400)
    assert "JSON" in response.json()["message"]


def test_form_data_gets_a_415_envelope(api: APIClient) -> None:
    response = api.post(f"{API}/snapshots", {"app_id": "x"})  # multipart
    envelope(response, 415)


def test_a_body_that_is_not_an_object_names_the_problem(api: APIClient) -> None:
    response = api.post(f"{API}/snapshots", [1, 2], format="json")
    data = envelope(response, 400)
    assert "non_field_errors" in data


def test_accept_header_does_not_change_the_format(api: APIClient) -> None:
    response = api.get(f"{API}/storage", HTTP_ACCEPT="application/xml")
    envelope(response, 200)
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "path",
    [
        "storage?x=1",
        "snapshots?app=wordpress",
        "tasks/5b0b8f1e-7d4c-4a55-9d4b-9b0b7a0e0a11?verbose=1",
        "snapshots?=false",
    ],
)
def test_unknown_query_parameters_are_400(api: APIClient, path: str) -> None:
    response = api.get(f"{API}/{path}")
    data = envelope(response, 400)
    assert "unknown query parameter" in response.json()["message"] and len(data) == 1


def test_head_takes_the_query_of_get(api: APIClient, make_snapshot) -> None:
    make_snapshot(app_id="alpha")
    assert api.head(f"{API}/snapshots", {"app_id": "alpha"}).status_code == 200
    assert api.head(f"{API}/snapshots", {"nope": "1"}).status_code == 400
