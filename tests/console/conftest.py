"""Fixtures of the console tests: the API tests' snapshot rows and the
schedules tests' app on the Docker engine."""

from tests.api.conftest import backup_root, make_snapshot, stored_snapshot  # noqa: F401
from tests.schedules.conftest import host_app, host_app_stack  # noqa: F401
