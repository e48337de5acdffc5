"""API key scopes: new keys default to operate; keys that existed before
scopes keep the full rights they had (admin) until someone changes them."""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def existing_keys_keep_full_rights(
    apps: StateApps, schema_editor: BaseDatabaseSchemaEditor
) -> None:
    # Every row present now was created before scopes existed.
    apps.get_model("snapshots", "ApiKey").objects.update(scope="admin")


class Migration(migrations.Migration):
    dependencies = [
        ("snapshots", "0006_offsite_copies"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="scope",
            field=models.CharField(
                choices=[
                    ("read", "read: lists, details, downloads, metrics"),
                    ("operate", "operate: read, and backups, verifies, schedules"),
                    ("admin", "admin: operate, and restores, deletes"),
                ],
                default="operate",
                max_length=8,
            ),
        ),
        migrations.RunPython(existing_keys_keep_full_rights, migrations.RunPython.noop),
    ]
