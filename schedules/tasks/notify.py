"""Celery tasks: notify."""
