"""An upload part's recorded checksum is the one sent with it (Content-MD5
or CRC32, storage.s3_parts), not a second digest of the part: one hash per part."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("snapshots", "0007_api_key_scopes"),
    ]

    operations = [
        # Rows only live while an upload is open; a resume of one written
        # before this keeps its ETags, the checksum column is informational.
        migrations.RemoveField(model_name="uploadpart", name="sha256"),
        migrations.AddField(
            model_name="uploadpart",
            name="checksum",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
    ]
