"""Property-based tests from the live OpenAPI schema (schemathesis, in-process
WSGI): with a valid API key, no generated input makes the API answer 5xx,
and every answer matches what the schema says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.django_db]


@pytest.fixture
def wsgi_in_test_transaction() -> Iterator[None]:
    """Raw WSGI requests close "old" database connections at their start and
    end, which would end the test's transaction (Django's test client does
    the same disconnecting)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def live_schema(wsgi_in_test_transaction: None, backup_root: Any, stored_snapshot: Any) -> Any:
    from backup_project.wsgi import application

    # Something for the read endpoints to find.
    stored_snapshot(b"some archive bytes")
    return schemathesis.openapi.from_wsgi("/api/v1/schema", application)


EXAMPLES_PER_OPERATION = 25
# Bodies whose validity the schema cannot say (the app must exist on the host,
# a timezone must be a real IANA name, a notification URL one Apprise knows,
# unknown fields are refused): a schema-valid body may get a clear 400 there.
SEMANTIC_VALIDATION = {
    ("POST", "/api/v1/backup/schedules"),
    ("PATCH", "/api/v1/backup/schedules/{schedule_id}"),
    ("PUT", "/api/v1/backup/apps/{app_id}/notifications"),
    ("POST", "/api/v1/backup/notifications/test"),
    ("GET", "/api/v1/backup/retention/preview"),
}


# schemathesis' own pytest integration (from_fixture) does not run on pytest
# 9, so each operation's strategy is driven by hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_answers_5xx(live_schema: Any, api_key: str, mode: GenerationMode) -> None:
    operations = [result.ok() for result in live_schema.get_all_operations()]
    backup_api = [op for op in operations if op.path.startswith("/api/v1/backup/")]
    assert len(backup_api) == 27  # every method of every endpoint

    for operation in operations:
        semantic = (operation.method.upper(), operation.path) in SEMANTIC_VALIDATION
        excluded = [positive_data_acceptance] if semantic else []

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            # A query parameter generated with an empty list of values is
            # dropped by the HTTP client: the "invalid" request is a valid one.
            assume(not any(value == [] for value in (case.query or {}).values()))
            case.call_and_validate(
                headers={"X-API-Key": api_key},
                excluded_checks=excluded,  # noqa: B023 (check() runs in this iteration)
            )

        check()
