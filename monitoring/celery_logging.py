"""The worker's and beat's logs in LOG_FORMAT, with the ids in play.

Celery replaces the root logger's handlers with its own (and gives task
loggers theirs); these signals then put the ContextFilter on each of them
and, for LOG_FORMAT=json, the JSON formatter; the plain format keeps
Celery's layout with the ids added before the message. Each task starts with
a fresh context holding its task id, and nothing of it outlives the task."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
)

from monitoring import log_context
from monitoring.log_format import JsonFormatter


def _log_format() -> str:
    from django.conf import settings

    return settings.LOG_FORMAT


def _decorate(logger: logging.Logger, fmt: str | None) -> None:
    json_lines = _log_format() == "json"
    for handler in logger.handlers:
        handler.addFilter(log_context.ContextFilter())
        if json_lines:
            handler.setFormatter(JsonFormatter())
        elif fmt and handler.formatter is not None:
            old = handler.formatter
            shown = fmt.replace("%(message)s", "%(log_context)s%(message)s")
            try:  # Celery's ColorFormatter and TaskFormatter take use_color
                handler.setFormatter(type(old)(shown, use_color=getattr(old, "use_color", False)))
            except TypeError:
                handler.setFormatter(logging.Formatter(shown))


@after_setup_logger.connect
def _root_logger(logger: logging.Logger, format: str | None = None, **_: Any) -> None:
    _decorate(logger, format)


@after_setup_task_logger.connect
def _task_logger(logger: logging.Logger, format: str | None = None, **_: Any) -> None:
    _decorate(logger, format)


@task_prerun.connect
def _task_starts(task_id: str | None = None, **_: Any) -> None:
    log_context.start(task_id=task_id)


@task_postrun.connect
def _task_ends(**_: Any) -> None:
    log_context.clear()
