"""Services: every write goes through here (API views, admin actions, Celery
tasks and management commands stay thin and call these)."""
