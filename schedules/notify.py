"""Delivery through Apprise: one `apprise.Apprise()` per delivery, every
target in it, sent in parallel under one bounded timeout; each target's
outcome comes back masked, its error scrubbed.

Apprise logs through the `apprise` logger (and requests through urllib3),
and some of its lines carry the URL: its privacy form still shows paths,
and "M...W" style masks give a password's first and last letters away. A
filter on those loggers rewrites every record before any handler sees it:
every URL in it masked, and every secret piece of the URLs being sent (or
checked) right now replaced, so neither our logs nor the worker's hold one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import apprise

from schedules.target_urls import mask_target, scrub

logger = logging.getLogger(__name__)

# The loggers whose records may carry a target URL (urllib3 logs the
# request line, path included, at DEBUG).
_FILTERED_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection", "requests")
_MAX_ERROR = 300


class _ActiveUrls:
    """The URLs being delivered or checked now, in any thread: what the log
    filter scrubs. A counter, since two deliveries may share a URL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: Counter[str] = Counter()

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self._urls)

    @contextlib.contextmanager
    def holding(self, urls: Sequence[str]) -> Iterator[None]:
        with self._lock:
            self._urls.update(urls)
        try:
            yield
        finally:
            with self._lock:
                self._urls.subtract(urls)
                self._urls += Counter()  # drops the zero counts


_active = _ActiveUrls()


class ScrubSecrets(logging.Filter):
    """Rewrites a record's message without the secrets of active URLs (and
    with every URL masked); drops its traceback text, which may quote one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: keep nothing of it
            message = "(unprintable log record)"
        record.msg = scrub(message, _active.snapshot())
        record.args = None
        if record.exc_info:
            name = record.exc_info[0].__name__ if record.exc_info[0] else "error"
            record.msg += f" ({name})"
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = ScrubSecrets()


def install_log_filter() -> None:
    """Put the filter on the loggers that may carry a URL (idempotent)."""
    for name in _FILTERED_LOGGERS:
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)


install_log_filter()


class _Verbose:
    """While deliveries run, Apprise logs at DEBUG into its per-target
    capture only (not propagated): the "why" of a failure (refused, timed
    out, 535 auth failed) is a DEBUG line, and our own log gets one scrubbed
    line per failed target instead of Apprise's chatter. Counted, since
    deliveries may overlap in threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: tuple[int, bool] = (logging.NOTSET, True)

    @contextlib.contextmanager
    def on(self) -> Iterator[None]:
        target = logging.getLogger("apprise")
        with self._lock:
            if self._depth == 0:
                self._saved = (target.level, target.propagate)
                target.setLevel(logging.DEBUG)
                target.propagate = False
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    target.setLevel(self._saved[0])
                    target.propagate = self._saved[1]


_verbose = _Verbose()


@contextlib.contextmanager
def scrubbed_apprise_logs(urls: Sequence[str]) -> Iterator[None]:
    """Apprise's log lines written inside this block lose URLS' secrets."""
    install_log_filter()
    with _active.holding(list(urls)):
        yield


@dataclass(frozen=True)
class TargetOutcome:
    """What one target said: its masked name, ok, and a scrubbed reason."""

    target: str
    ok: bool
    status: str  # "sent" | "failed" | "timeout" | "invalid"
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_CAUSES = (
    re.compile(r"\[Errno -?\d+\] [^'\")(]+"),  # [Errno 111] Connection refused
    re.compile(r"Read timed out|timed out|Connection reset by peer", re.IGNORECASE),
    re.compile(r"\b[45]\d\d\b[^;'\"]*"),  # an SMTP or HTTP status and its text
)


def _reason(result: Any, url: str) -> str:
    """Why RESULT (an Apprise NotifyResult) failed, from its captured log
    lines: the warning says what (e.g. "A Connection error occurred sending
    JSON notification to 127.0.0.1."), the DEBUG "Exception:" line why."""
    what: list[str] = []
    why = ""
    for entry in result.logs():
        text = str(getattr(entry, "message", ""))
        if str(getattr(entry, "level", "")) in ("WARNING", "ERROR", "CRITICAL"):
            what.append(text.rstrip("."))
        elif "Exception:" in text and not why:
            cause = next((m.group(0) for p in _CAUSES if (m := p.search(text))), "")
            why = cause.strip() or text.split("Exception:", 1)[1].strip()
    reason = "; ".join(dict.fromkeys(what)) or getattr(result.status, "name", "failed").lower()
    if why:
        reason += f": {why}"
    return scrub(reason, [url])[:_MAX_ERROR]


def deliver(
    urls: Sequence[str], title: str, body: str, *, timeout: float, kind: str = "info"
) -> list[TargetOutcome]:
    """Send TITLE/BODY to every URL at once; at most about TIMEOUT seconds
    in all (each socket waits at most TIMEOUT, and Apprise stops waiting for
    a target at TIMEOUT). KIND is Apprise's notify type (info, success,
    warning, failure): services show it (a red mark, a json "type"), so a
    failure must not arrive looking like news. Never raises; one outcome
    per URL, in order."""
    outcomes: dict[int, TargetOutcome] = {}
    with scrubbed_apprise_logs(urls), _verbose.on():
        try:
            return _deliver(urls, title, body, timeout, outcomes, kind)
        except Exception as exc:  # an Apprise bug must not become ours
            logger.error("notification delivery crashed: %s", type(exc).__name__)
            return [
                outcomes.get(i)
                or TargetOutcome(mask_target(url), False, "failed", f"{type(exc).__name__}")
                for i, url in enumerate(urls)
            ]


def _deliver(
    urls: Sequence[str],
    title: str,
    body: str,
    timeout: float,
    outcomes: dict[int, TargetOutcome],
    kind: str = "info",
) -> list[TargetOutcome]:
    # Memory storage: Apprise keeps no state on disk between deliveries.
    asset = apprise.AppriseAsset(storage_mode="memory", service_timeout=timeout)
    sender = apprise.Apprise(asset=asset)
    tags: dict[str, int] = {}
    for index, url in enumerate(urls):
        tag = f"target-{index}"
        plugin = apprise.Apprise.instantiate(url, asset=asset, tag=tag)
        if plugin is None:
            outcomes[index] = TargetOutcome(
                mask_target(url), False, "invalid", "Apprise cannot use this URL"
            )
            continue
        # Apprise's defaults (4 s, 15 s for SMTP) are per socket operation;
        # ours bound each of them too.
        plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), timeout)
        plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), timeout)
        sender.add(plugin)
        tags[tag] = index
    if tags:
        result = sender.notify(
            body=body,
            title=title,
            notify_type=apprise.NotifyType(kind),
            timeout=timeout,
            log_level=logging.DEBUG,
        )
        for service in result:
            index = next((tags[t] for t in service.tag if t in tags), None)
            if index is None:
                continue
            url = urls[index]
            status = getattr(service.status, "name", "FAILURE")
            if bool(service):
                outcomes[index] = TargetOutcome(mask_target(url), True, "sent")
            elif status == "TIMEOUT":
                outcomes[index] = TargetOutcome(
                    mask_target(url), False, "timeout", f"no answer within {timeout:g} s"
                )
            else:
                reason = _reason(service, url)
                timed_out = "timed out" in reason.lower()
                outcomes[index] = TargetOutcome(
                    mask_target(url), False, "timeout" if timed_out else "failed", reason
                )
        result.close()
    return [
        outcomes.get(index) or TargetOutcome(mask_target(url), False, "failed", "not attempted")
        for index, url in enumerate(urls)
    ]
