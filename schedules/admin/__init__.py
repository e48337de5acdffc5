"""Admin for schedules, in the product's own terms (not raw periodic tasks)."""

from schedules.admin import notification_admin, schedule_admin  # noqa: F401
