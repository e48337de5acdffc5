from django.db import migrations, models


def fail_duplicate_active_restores(apps, schema_editor) -> None:  # noqa: ANN001 - Django's signature
    """Before the constraint: if an app has several pending/running restores
    (possible before it existed), keep the newest and fail the others."""
    Run = apps.get_model("snapshots", "Run")
    active = Run.objects.filter(operation="restore", state__in=["pending", "running"])
    newest: dict[str, object] = {}
    for run in active.order_by("-created_at"):
        if run.app_id in newest:
            Run.objects.filter(pk=run.pk).update(
                state="failed", error="superseded by a newer restore request of the same app"
            )
        else:
            newest[run.app_id] = run.pk


class Migration(migrations.Migration):
    dependencies = [
        ("snapshots", "0002_apikey"),
    ]

    operations = [
        migrations.RunPython(fail_duplicate_active_restores, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.UniqueConstraint(
                condition=models.Q(("operation", "restore"), ("state__in", ["pending", "running"])),
                fields=("app_id",),
                name="one_active_restore_per_app",
            ),
        ),
    ]
