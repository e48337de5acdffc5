"""A request body nested too deeply is a 400 in the envelope, not a 500
(json.load recursing into RecursionError), through the real middleware,
authentication, parser and exception handler (Django's test client)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from snapshots.api.parsers import MAX_DEPTH
from snapshots.models import Run
from tests.api.conftest import API, MakeSnapshot, envelope

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        '{"deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
    ids=["list", "object", "inside-a-field"],
)
def test_a_100000_deep_body_is_a_400(
    api: APIClient, make_snapshot: MakeSnapshot, body: str
) -> None:
    snapshot = make_snapshot()
    response = api.generic(
        "POST", f"{API}/snapshots/{snapshot.backup_id}/verify", body, "application/json"
    )
    envelope(response, 400)
    assert "nested" in response.json()["message"]
    assert not Run.objects.exists()


def test_a_body_just_too_deep_for_the_bound_is_a_400_and_a_normal_one_is_not(
    api: APIClient, make_snapshot: MakeSnapshot
) -> None:
    """Under the interpreter's recursion limit but over the bound: refused
    too (a validation error echoing it would walk it recursively)."""
    snapshot = make_snapshot()
    url = f"{API}/snapshots/{snapshot.backup_id}/verify"
    deep = '{"deep": ' + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "}"
    envelope(api.generic("POST", url, deep, "application/json"), 400)
    envelope(api.generic("POST", url, '{"deep": false}', "application/json"), 200)
