"""Gunicorn's settings for the web process (scripts/run.sh, the Dockerfile:
`gunicorn --config python:monitoring.gunicorn_conf ...`).

With LOG_FORMAT=json, gunicorn's own lines (start, workers, errors) and its
access log are JSON objects too, in the same layout as the application's
(monitoring/log_format.py), so every line of the web process parses; the
access log still goes to stdout, the rest to stderr. With the plain format
gunicorn keeps its own layout. Read from the environment as the settings
read it; no Django here (gunicorn loads this before the application)."""

from __future__ import annotations

import os
from typing import Any


def json_logconfig() -> dict[str, Any]:
    formatter = {"()": "monitoring.log_format.JsonFormatter"}
    context = {"()": "monitoring.log_context.ContextFilter"}

    def handler(stream: str) -> dict[str, Any]:
        return {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"],
                "stream": stream}  # fmt: skip

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "filters": {"context": context},
        "handlers": {"stdout": handler("ext://sys.stdout"), "stderr": handler("ext://sys.stderr")},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }


# No control socket (gunicornc is not used): its default path is one per
# user ($HOME/.gunicorn/gunicorn.ctl), which a second gunicorn on the host
# (a test run beside `make run`) would take over.
control_socket_disable = True

if os.environ.get("LOG_FORMAT", "plain").strip().lower() == "json":
    logconfig_dict = json_logconfig()
