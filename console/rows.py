"""The dashboard's table rows, built in Python: the template engine took
most of the page's time for 500 rows (two {% url %} and a dozen filters
each); format_html escapes every value the same way."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from console.format import human_age, human_size
from console.selectors import AppRow

ROW = (
    '<tr class="level-{}" data-app="{}"><td><a href="{}">{}</a></td><td>{}</td>'
    "<td>{}</td><td{}>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
    '<td class="warnings">{}</td><td><a class="button" href="{}">Back up now</a></td></tr>'
)


def app_rows(apps: list[AppRow], now: datetime) -> SafeString:
    # One reverse() per page, not two per row: app ids are URL-safe, quoted anyway.
    app_url = reverse("admin:console_app", args=["APP"]).replace("APP", "{}")
    backup_url = reverse("admin:console_backup_now", args=["APP"]).replace("APP", "{}")
    return format_html_join("\n", ROW, (_cells(app, now, app_url, backup_url) for app in apps))


def _cells(app: AppRow, now: datetime, app_url: str, backup_url: str) -> tuple[object, ...]:
    quoted = quote(app.app_id, safe="")
    last = app.last
    if last is None:
        status: object = mark_safe('<span class="status-failed">none</span>')
        age_title, age, size = "", "—", "—"
    else:
        status = format_html('<span class="status-{}">{}</span>', last.status, last.status)
        age_title = format_html(' title="{} UTC"', f"{last.created_at:%Y-%m-%d %H:%M:%S}")
        age, size = human_age(last.created_at, now), human_size(last.size_bytes)
    return (
        app.level, app.app_id, app_url.format(quoted), app.app_id, app.host_id,
        status, age_title, age, size, _verify(app, now),
        f"{app.next_run_at:%Y-%m-%d %H:%M} UTC" if app.next_run_at else "—",
        app.chain_length or "—", f"{human_size(app.storage_bytes)} ({app.snapshots})",
        "; ".join(app.warnings) or "—", backup_url.format(quoted),
    )  # fmt: skip


def _verify(app: AppRow, now: datetime) -> object:
    verify = app.last_verify
    if verify is None:
        return "never"
    deep = " (deep)" if verify.deep else ""
    when = human_age(verify.created_at, now)
    if verify.valid:
        return f"valid{deep}, {when}"
    return format_html('<span class="status-failed">failed</span>{}, {}', deep, when)
