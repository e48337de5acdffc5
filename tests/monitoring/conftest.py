"""Fixtures of the monitoring tests: the API tests' snapshot rows."""

from tests.api.conftest import backup_root, make_snapshot, stored_snapshot  # noqa: F401
