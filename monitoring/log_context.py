"""The ids in play (run, app, host, Celery task) for every log record, worker
and web alike, without passing them to each logger call.

A context variable holds a stack of bindings. snapshots/runs.py pushes the
run's ids when a run is claimed (the one place every backup, verify,
restore and upload starts) and pops a nested run (a restore's safety backup)
when it ends, so the restore's own ids come back; the outermost run's ids
stay until its task or request ends. Celery's task signals give each task a
fresh context with its task id (monitoring/celery_logging.py); the web's
middleware gives each request a fresh one (monitoring/middleware.py). No
Django here: the worker's logging set-up imports it before Django is ready."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("run_id", "app_id", "host_id", "task_id")
_SHORT = {"run_id": "run", "app_id": "app", "host_id": "host", "task_id": "task"}

_stack: ContextVar[tuple[dict[str, str], ...]] = ContextVar("backup_log_context", default=())


def current() -> dict[str, str]:
    """The ids in play now, the innermost binding winning."""
    merged: dict[str, str] = {}
    for binding in _stack.get():
        merged.update(binding)
    return merged


def push(**ids: object) -> None:
    binding = {name: str(value) for name, value in ids.items() if value not in (None, "")}
    unknown = set(binding) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    _stack.set((*_stack.get(), binding))


def pop_run(run_id: object) -> None:
    """End a nested run's binding (a run claimed while another run's ids are
    bound); an outermost run keeps its ids until its task or request ends,
    so the lines logged after its end still say which run they are about."""
    stack = _stack.get()
    nested = any("run_id" in binding for binding in stack[:-1])
    if stack and nested and stack[-1].get("run_id") == str(run_id):
        _stack.set(stack[:-1])


# Ids from a URL are bound only when they have an id's shape: a path is the
# client's text, and a newline in it would forge a line of the plain log.
_URL_IDS = {
    "app_id": re.compile(r"[a-z0-9][a-z0-9_-]{0,127}"),
    "task_id": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
}


def bind_request_ids(url_kwargs: Mapping[str, object]) -> None:
    """An API request's app id and task id (from its URL) for the rest of
    the request; the web's middleware drops them when it ends."""
    ids = {
        name: value
        for name, pattern in _URL_IDS.items()
        if isinstance(value := url_kwargs.get(name), str) and pattern.fullmatch(value)
    }
    if ids:
        push(**ids)


def start(**ids: object) -> None:
    """A fresh context (a new task): nothing of the previous one stays."""
    _stack.set(())
    push(**ids)


def clear() -> None:
    _stack.set(())


@contextmanager
def fresh(**ids: object) -> Iterator[None]:
    """A fresh context for the block (a web request), the outer one restored after."""
    token = _stack.set(())
    try:
        push(**ids)
        yield
    finally:
        _stack.reset(token)


class ContextFilter(logging.Filter):
    """Adds run_id, app_id, host_id and task_id (None when not in play) to
    every record, and `log_context`, e.g. "[run=3f2a… app=wordpress] ", for
    plain formats. Ids given by the caller (extra=) are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current()
        for name in FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, ids.get(name))
        shown = [f"{_SHORT[n]}={getattr(record, n)}" for n in FIELDS if getattr(record, n)]
        record.log_context = f"[{' '.join(shown)}] " if shown else ""
        return True
