"""Snapshots: apps, backups, runs, their API, admin and Celery tasks."""
