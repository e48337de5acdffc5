"""Times by the database's clock, for comparisons every worker agrees on:
workers' clocks may drift apart, the database's is the one they all read."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now


def db_now_plus(seconds: float) -> ExpressionWrapper:
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


def db_ago(seconds: float) -> ExpressionWrapper:
    return ExpressionWrapper(Now() - timedelta(seconds=seconds), output_field=DateTimeField())
