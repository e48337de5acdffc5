from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"
    verbose_name = "Docker hosts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from fleet import heartbeat  # noqa: F401 - connects the worker_ready signal
