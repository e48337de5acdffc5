"""App locks keyed by (host_id, app_id), not app_id alone: the same app id
on two Docker hosts is two apps (issue 14). The old table's primary key was
app_id, so the rows move to a new table: each keeps its fence (which only
ever grows) and its holder, under the host of the run holding it, else of
the app's latest run, else this deployment's BACKUP_HOST_ID (the one host
there was). The one-active-restore constraint becomes per host too."""

from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion


def copy_locks(apps, schema_editor):
    Old = apps.get_model("snapshots", "AppLockByApp")
    New = apps.get_model("snapshots", "AppLock")
    Run = apps.get_model("snapshots", "Run")
    for old in Old.objects.all().iterator():
        host = ""
        if old.run_id is not None:
            host = Run.objects.filter(pk=old.run_id).values_list("host_id", flat=True).first()
        if not host and old.app_id.startswith("drill:"):
            host = old.app_id.split(":", 1)[1]
        if not host:
            latest = Run.objects.filter(app_id=old.app_id).exclude(host_id="")
            host = latest.order_by("-created_at").values_list("host_id", flat=True).first()
        New.objects.create(
            host_id=host or settings.BACKUP_HOST_ID, app_id=old.app_id, run_id=old.run_id,
            token=old.token, fence=old.fence, acquired_at=old.acquired_at,
            heartbeat_at=old.heartbeat_at, expires_at=old.expires_at,
        )


def copy_back(apps, schema_editor):
    """Backwards: one row per app id, the highest fence of its hosts' rows."""
    Old = apps.get_model("snapshots", "AppLockByApp")
    New = apps.get_model("snapshots", "AppLock")
    for new in New.objects.order_by("app_id", "-fence").iterator():
        if not Old.objects.filter(app_id=new.app_id).exists():
            Old.objects.create(
                app_id=new.app_id, run_id=new.run_id, token=new.token, fence=new.fence,
                acquired_at=new.acquired_at, heartbeat_at=new.heartbeat_at,
                expires_at=new.expires_at,
            )


class Migration(migrations.Migration):

    dependencies = [
        ('snapshots', '0009_incremental_chains'),
    ]

    operations = [
        migrations.RenameModel(old_name='AppLock', new_name='AppLockByApp'),
        migrations.CreateModel(
            name='AppLock',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('host_id', models.CharField(max_length=128)),
                ('app_id', models.CharField(max_length=128)),
                ('token', models.CharField(blank=True, max_length=64)),
                ('fence', models.BigIntegerField(default=0)),
                ('acquired_at', models.DateTimeField(null=True)),
                ('heartbeat_at', models.DateTimeField(null=True)),
                ('expires_at', models.DateTimeField(null=True)),
                ('run', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='snapshots.run')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('host_id', 'app_id'), name='one_lock_per_host_app')],
            },
        ),
        migrations.RunPython(copy_locks, copy_back),
        migrations.DeleteModel(name='AppLockByApp'),
        migrations.RemoveConstraint(model_name='run', name='one_active_restore_per_app'),
        migrations.AddConstraint(
            model_name='run',
            constraint=models.UniqueConstraint(condition=models.Q(('operation', 'restore'), ('state__in', ['pending', 'running'])), fields=('host_id', 'app_id'), name='one_active_restore_per_host_app'),
        ),
    ]
