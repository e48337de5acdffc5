"""GET snapshots/<backup_id>/download: the stored archive, streamed.

Memory stays flat whatever the size: the file is read and sent in 1 MiB
chunks. One byte range is served as 206 (resuming a broken download). A
snapshot whose only copy is off-site (`s3`, or `local+s3` whose local file
is gone) streams from there: get_storage() reads the first copy that exists,
and the S3 reader is ranged GETs resumed after a dropped connection, with
nothing written to disk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request

from snapshots import selectors
from snapshots.api.ranges import ByteRange, parse_range
from snapshots.api.schema import BACKUP_ID_PARAMETER, responses
from snapshots.api.scopes import READ
from snapshots.api.views.base import ApiView

CHUNK = 1024 * 1024


def read_range(handle: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    """LENGTH bytes of HANDLE from START, in chunks; closes HANDLE at the end
    (or when the client goes away and the server closes the iterator)."""
    try:
        if start:
            handle.seek(start)
        remaining = length
        while remaining > 0:
            data = handle.read(min(CHUNK, remaining))
            if not data:
                break  # the file shrank under us: the short body shows it
            remaining -= len(data)
            yield data
    finally:
        handle.close()


class SnapshotDownloadView(ApiView):
    required_scope = READ

    @extend_schema(
        tags=["snapshots"],
        operation_id="snapshots_download",
        summary="Download a snapshot's archive",
        description="The archive exactly as stored (zstd/gzip tar, age-encrypted when "
        "encrypted), from the local copy or, when there is none, streamed from the off-site "
        "one. X-Checksum-SHA256 is the SHA-256 of the whole file, also for a "
        "206 partial response. One range per request.",
        parameters=[
            BACKUP_ID_PARAMETER,
            OpenApiParameter(
                "Range",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="bytes=START-END, bytes=START- or bytes=-SUFFIX",
            ),
        ],
        responses=responses(
            {
                (200, "application/octet-stream"): OpenApiResponse(
                    OpenApiTypes.BINARY, description="the whole archive"
                ),
                (206, "application/octet-stream"): OpenApiResponse(
                    OpenApiTypes.BINARY, description="the requested range"
                ),
            },
            404,
            409,
            416,
        ),
    )
    def get(self, request: Request, backup_id: str) -> StreamingHttpResponse:
        snapshot = selectors.get_snapshot(backup_id)
        archive = selectors.stored_archive(snapshot)
        wanted = parse_range(request.headers.get("Range"), archive.size)
        span = wanted or ByteRange(0, archive.size - 1)
        length = span.length if archive.size else 0
        response = StreamingHttpResponse(
            read_range(archive.storage.open(archive.key), span.start, length),
            status=206 if wanted else 200,
            content_type="application/octet-stream",
        )
        response["Content-Length"] = str(length)
        response["Accept-Ranges"] = "bytes"
        response["Content-Disposition"] = f'attachment; filename="{archive.filename}"'
        response["X-Checksum-SHA256"] = snapshot.sha256
        response["ETag"] = f'"{snapshot.sha256}"'
        if wanted:
            response["Content-Range"] = wanted.content_range(archive.size)
        return response
