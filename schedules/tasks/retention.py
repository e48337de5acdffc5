"""Celery tasks: retention."""
