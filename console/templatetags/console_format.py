"""Template filters for the console: size, duration, age."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template

from console.format import human_age, human_duration, human_size

register = template.Library()


@register.filter
def size(value: float | None) -> str:
    return human_size(value)


@register.filter
def duration(value: float | None) -> str:
    return human_duration(value)


@register.filter
def age(value: datetime | None) -> str:
    return human_age(value)


@register.filter
def as_json(value: Any) -> str:
    """Indented JSON (escaped by the template like any text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)
