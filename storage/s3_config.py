"""Settings of one S3 location, the boto3 client built from them, the part
size rule and the translation of botocore errors into StorageErrors.

Everything comes in as plain values (the caller reads its settings or the
database); nothing here reads environment variables, so two locations in
one process never share a setting by accident."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from engine.errors import ObjectNotFound, StorageError

MIB = 1024 * 1024
# S3's own limits: at most 10,000 parts, each at least 5 MiB (but the last)
# and at most 5 GiB; an object at most 5 TiB.
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MIB
# The largest object one CopyObject copies (larger: UploadPartCopy).
MAX_COPY_SIZE = 5 * 1024 * MIB
# Our floor: fewer, larger requests than S3 allows; 8 MiB parts keep a 80 GB
# archive within 10,000 parts and memory at concurrency x 8 MiB.
DEFAULT_PART_SIZE = 8 * MIB

# A live writer re-puts its partial marker this often, so sweeping by the
# marker's age never removes a write that is still going.
MARKER_REFRESH_SECONDS = 600.0

Addressing = Literal["path", "virtual", "auto"]
ChecksumWhen = Literal["when_supported", "when_required"]


def part_size_for(size: int, minimum: int = DEFAULT_PART_SIZE) -> int:
    """The part size for an object of SIZE bytes: at least MINIMUM, growing
    in whole MiB so that the object fits in MAX_PARTS parts."""
    if size < 0:
        raise ValueError("size must not be negative")
    if size > MAX_OBJECT_SIZE:
        raise ValueError(f"{size} bytes is more than S3's largest object ({MAX_OBJECT_SIZE})")
    needed = math.ceil(size / MAX_PARTS)
    part = max(minimum, math.ceil(needed / MIB) * MIB)
    return min(part, MAX_PART_SIZE)


@dataclass(frozen=True)
class S3Config:
    """One S3 location. The secret never shows in repr() or in any error."""

    bucket: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    region: str = "us-east-1"
    endpoint_url: str | None = None  # None: AWS itself
    prefix: str = ""  # prepended to every key, e.g. "backups/"
    addressing_style: Addressing = "path"
    # boto3 >= 1.36 sends CRC checksums by default; several S3-compatible
    # servers reject them, so "when_required" is the portable default.
    request_checksum_calculation: ChecksumWhen = "when_required"
    response_checksum_validation: ChecksumWhen = "when_required"
    part_size: int | None = None  # None: part_size_for(size); streaming writes use the floor
    concurrency: int = 4  # parts in flight; memory is about concurrency x part size
    # A read fetches ranges of this size, up to `concurrency` at once (storage.s3_reader).
    read_chunk_size: int = DEFAULT_PART_SIZE
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 5  # botocore's per-request retries (standard mode)
    part_attempts: int = 5  # our retries of a whole part on top of those
    # Above this a streamed write's object gets its SHA-256 by a multipart
    # copy, not one CopyObject (storage.s3_metadata); lowered only in tests.
    copy_max_size: int = MAX_COPY_SIZE
    name: str = "s3"  # the storage location's name, shown in errors

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError(f"storage {self.name!r}: the S3 bucket must not be empty")
        if self.addressing_style not in ("path", "virtual", "auto"):
            raise ValueError(f"storage {self.name!r}: unknown addressing style")
        for setting in (self.request_checksum_calculation, self.response_checksum_validation):
            if setting not in ("when_supported", "when_required"):
                raise ValueError(f"storage {self.name!r}: unknown checksum setting {setting!r}")
        if self.part_size is not None and not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ValueError(
                f"storage {self.name!r}: part size must be between {MIN_PART_SIZE} and "
                f"{MAX_PART_SIZE} bytes"
            )
        if not MIN_PART_SIZE <= self.copy_max_size <= MAX_COPY_SIZE:
            raise ValueError(
                f"storage {self.name!r}: copy_max_size must be between {MIN_PART_SIZE} and "
                f"{MAX_COPY_SIZE} bytes"
            )
        if not 64 * 1024 <= self.read_chunk_size <= MAX_PART_SIZE:
            raise ValueError(
                f"storage {self.name!r}: read chunk size must be between 64 KiB and "
                f"{MAX_PART_SIZE} bytes"
            )
        if self.concurrency < 1 or self.max_attempts < 1 or self.part_attempts < 1:
            raise ValueError(f"storage {self.name!r}: concurrency and attempts must be >= 1")
        if self.prefix and (self.prefix.startswith("/") or not self.prefix.endswith("/")):
            raise ValueError(
                f"storage {self.name!r}: the key prefix must be relative and end in '/'"
            )

    @property
    def where(self) -> str:
        """How errors name the location: name, bucket and endpoint, no credentials."""
        endpoint = self.endpoint_url or f"AWS {self.region}"
        parts = urlsplit(endpoint)
        if parts.username or parts.password:
            # Credentials in the URL are still credentials: never shown.
            host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
            endpoint = parts._replace(netloc=host).geturl()
        return f"storage {self.name!r} (S3 bucket {self.bucket!r} at {endpoint})"


def make_client(config: S3Config) -> Any:
    """A boto3 S3 client with explicit retries, timeouts, addressing and checksums."""
    botocore_config = Config(
        region_name=config.region,
        retries={"mode": "standard", "max_attempts": config.max_attempts},
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        s3={"addressing_style": config.addressing_style},
        request_checksum_calculation=config.request_checksum_calculation,
        response_checksum_validation=config.response_checksum_validation,
        # One pooled connection per part in flight, plus one for HEAD/LIST.
        max_pool_connections=config.concurrency + 2,
        signature_version="s3v4",
    )
    with _SESSION_LOCK:
        global _session
        if _session is None:
            _session = boto3.session.Session()
        # Credentials per client, not per session: locations never share them,
        # and the session's loaded service models are reused (a new session
        # per client costs a second of CPU on a busy host).
        return _session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            config=botocore_config,
        )


# Creating clients from one session is not thread-safe: hence the lock.
_SESSION_LOCK = threading.Lock()
_session: boto3.session.Session | None = None


# Codes that say "this server does not have that operation" (s3rver has no
# ListParts, ListMultipartUploads or AbortMultipartUpload).
UNSUPPORTED_CODES = frozenset({"NotImplemented", "MethodNotAllowed", "405", "501"})
_AUTH_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# Worth another try: the server or the network, not the request.
TRANSIENT_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
    }
)
TRANSIENT_ERRORS = (
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    EndpointConnectionError,
    ConnectionError,
    TimeoutError,
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or status >= 500
    # urllib3 and http.client errors surface while reading a body.
    return type(exc).__name__ in {
        "ProtocolError",
        "IncompleteRead",
        "IncompleteReadError",
        "ResponseStreamingError",
    }


def is_unsupported(exc: BaseException) -> bool:
    return error_code(exc) in UNSUPPORTED_CODES


def s3_error(config: S3Config, exc: BaseException, doing: str, key: str = "") -> StorageError:
    """The StorageError for a botocore failure: names the location, the bucket
    and the key; never the credentials (scrubbed even from server messages)."""
    code = error_code(exc)
    if code in _MISSING_CODES and key:
        return ObjectNotFound(f"no object {key!r} in storage {config.name!r}")
    if code == "NoSuchBucket" or (code in _MISSING_CODES and not key):
        reason = f"the bucket {config.bucket!r} does not exist"
    elif code in _AUTH_CODES:
        reason = f"access denied ({code}): check the location's access key id and secret key"
    elif isinstance(exc, NoCredentialsError):
        reason = "no credentials: set the location's access key id and secret key"
    elif isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        reason = "cannot reach the endpoint (connection refused or timed out)"
    elif isinstance(exc, ReadTimeoutError):
        reason = "the server stopped answering (read timeout)"
    elif isinstance(exc, ClientError):
        message = exc.response.get("Error", {}).get("Message", "")
        reason = f"{code}: {message}" if message else code
    elif isinstance(exc, BotoCoreError):
        reason = type(exc).__name__
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return StorageError(scrub(config, f"{config.where}: {doing} failed: {reason}"))


def scrub(config: S3Config, text: str) -> str:
    if config.secret_key:
        text = text.replace(config.secret_key, "***")
    return text
