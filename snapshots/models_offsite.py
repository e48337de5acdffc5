"""Off-site copies of snapshots and the parts of their multipart uploads.

A snapshot stored as `local+s3` or `s3` gets one OffsiteCopy per off-site
location; the upload run fills it. Each part the server acknowledged is an
UploadPart row, written as soon as it is acknowledged: a run that died (kill
-9, a restarted worker) resumes from these rows and sends only the rest."""

from __future__ import annotations

from django.db import models


class OffsiteCopy(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"  # queued, nothing sent yet
        UPLOADING = "uploading"  # a multipart upload is open (resumable)
        VERIFIED = "verified"  # on the server, size and SHA-256 checked
        FAILED = "failed"  # gave up; `error` says why (never a secret)

    snapshot = models.ForeignKey(
        "snapshots.Snapshot", on_delete=models.CASCADE, related_name="offsite_copies"
    )
    location = models.CharField(max_length=64)  # a storage location's name, e.g. "s3"
    key = models.CharField(max_length=512)  # the archive's storage key there
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # The open multipart upload (PartLedger.start): enough for another
    # process to resume it.
    upload_id = models.CharField(max_length=1024, blank=True)
    marker = models.CharField(max_length=600, blank=True)
    part_size = models.BigIntegerField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    upload_started = models.FloatField(null=True, blank=True)  # time.time() of the upload
    bytes_done = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    run = models.ForeignKey(
        "snapshots.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "location"], name="one_offsite_copy_per_location"
            ),
        ]
        indexes = [models.Index(fields=["location", "state"])]

    def __str__(self) -> str:
        return f"{self.snapshot_id} on {self.location} ({self.state})"


class UploadPart(models.Model):
    """One part the server acknowledged (number, size, checksum, ETag)."""

    copy = models.ForeignKey(OffsiteCopy, on_delete=models.CASCADE, related_name="parts")
    upload_id = models.CharField(max_length=1024)
    number = models.PositiveIntegerField()
    size = models.BigIntegerField()
    checksum = models.CharField(max_length=64)  # as sent: "md5:<hex>" or "crc32:<base64>"
    etag = models.CharField(max_length=128)
    acknowledged_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["copy", "number"], name="one_row_per_upload_part"),
        ]
        ordering = ["number"]

    def __str__(self) -> str:
        return f"part {self.number} of {self.copy_id}"
