from django.db import migrations, models
import django.db.models.deletion


def expire_old_locks(apps, schema_editor) -> None:  # noqa: ANN001 - Django's signature
    """A lock taken before leases has no token and no expiry: let it expire
    at its last heartbeat, so recovery can take it over."""
    AppLock = apps.get_model("snapshots", "AppLock")
    AppLock.objects.filter(expires_at__isnull=True).update(expires_at=models.F("heartbeat_at"))


class Migration(migrations.Migration):
    """AppLock becomes a lease with fencing (one row per app, kept, with a
    token, a fence that only grows, and an expiry by the database's clock);
    runs get a write-ahead journal of the steps that changed an app."""

    dependencies = [
        ("snapshots", "0004_snapshot_warnings"),
    ]

    operations = [
        migrations.AlterField(
            model_name="applock",
            name="run",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.SET_NULL,
                related_name="+", to="snapshots.run",
            ),
        ),
        migrations.AlterField(
            model_name="applock", name="acquired_at", field=models.DateTimeField(null=True),
        ),
        migrations.AlterField(
            model_name="applock", name="heartbeat_at", field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="applock", name="token",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="applock", name="fence", field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="applock", name="expires_at", field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(expire_old_locks, migrations.RunPython.noop),
        migrations.AddField(
            model_name="run", name="journal",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
