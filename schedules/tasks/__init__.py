"""Celery tasks of schedules (autodiscovered as `schedules.tasks`): each
module registers its own, with explicit names, since django-celery-beat
stores task names as strings."""

from schedules.tasks import firing, notify, retention  # noqa: F401
