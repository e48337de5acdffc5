"""Celery tasks: firing."""
