"""A failed command-line run says which run it was and where its log went:
there is no worker in a command-line run, its log is the command's own."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshots.management.commands.backup import failure, log_destination


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger with no handlers, as it was put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        yield root
    finally:
        root.handlers, root.level = saved[0], saved[1]


def test_the_log_goes_where_the_logging_settings_send_it(
    root_logging: logging.Logger, tmp_path: Path
) -> None:
    root_logging.setLevel(logging.INFO)
    root_logging.addHandler(logging.StreamHandler())  # settings.LOGGING's console handler
    assert log_destination() == "its log (LOG_LEVEL=INFO) went to this command's standard error"
    root_logging.addHandler(logging.FileHandler(tmp_path / "backup.log"))
    root_logging.addHandler(logging.StreamHandler(sys.stdout))
    assert log_destination() == (
        "its log (LOG_LEVEL=INFO) went to this command's standard error and the file "
        f"{tmp_path / 'backup.log'} and this command's standard output"
    )
    for handler in root_logging.handlers:
        handler.close()


def test_no_log_says_how_to_get_one(root_logging: logging.Logger) -> None:
    root_logging.setLevel(logging.CRITICAL)
    root_logging.addHandler(logging.StreamHandler())
    assert log_destination() == (
        "nothing of it was logged (LOG_LEVEL=CRITICAL); "
        "run again with LOG_LEVEL=INFO for its log on standard error"
    )
    root_logging.setLevel(logging.INFO)
    root_logging.handlers = []
    assert log_destination() == "no log handler is configured, so nothing of it was logged"


def test_failure_names_the_run_and_its_log(root_logging: logging.Logger) -> None:
    root_logging.setLevel(logging.WARNING)
    root_logging.addHandler(logging.StreamHandler())
    error = failure("restore", "internal error (KeyError); see the worker log", "1f2e")
    assert str(error) == (
        "restore failed: internal error (KeyError)\n"
        "Run 1f2e ran in this command, not on a worker: its log (LOG_LEVEL=WARNING) went to "
        "this command's standard error."
    )
    assert str(failure("restore", "restore failed: no space", "1f2e")).startswith(
        "restore failed: no space\nRun 1f2e"
    )
