"""LOG_FORMAT=json: one JSON object per line with time, level, logger,
message, the ids in play (monitoring/log_context.py) and, for an error with
a traceback, the traceback. Only the record's own message goes out: the
formatter adds no request data, environment or arguments (never a secret
that the message itself does not carry)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from monitoring.log_context import FIELDS, ContextFilter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "log_context"):
            ContextFilter().filter(record)  # a handler set up without the filter
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # One line whatever the message holds: newlines are escaped by json.
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """A %-style format that may use %(log_context)s even on a handler
    without the ContextFilter (Celery's own)."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "log_context"):
            ContextFilter().filter(record)
        return super().format(record)
