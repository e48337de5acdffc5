"""The network misbehaving between boto3 and a real S3 server (a TCP relay,
tests/tcp_fault_proxy.py): a connection reset or stalled during part N of an
upload, a GET cut or stalled mid-body, and a kill -9 of the uploading
process. Uploads complete with the right SHA-256, reads resume from their
offset, and a resumed upload sends only the parts the server lacks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import ObjectNotFound
from storage.s3_config import MIB
from storage.s3_ledger import JsonFileLedger
from tests.s3_servers import REPO_ROOT, S3Server
from tests.storage.conftest import TEST_PART_SIZE, s3_storage_on
from tests.storage.s3_helpers import part_puts, random_file, stored_sha256
from tests.tcp_fault_proxy import FaultProxy, Rule

KEY = "app_1/backup_20260105_103000_3fa2c1.tar.zst.age"
SIZE = 3 * TEST_PART_SIZE + 4321
# A stall lasts the client's read timeout (2 s here) at least once.
STALL = pytest.param("stall", marks=pytest.mark.slow)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.port) as relay:
        yield relay


@pytest.mark.parametrize("action", ["reset", STALL])
def test_upload_survives_a_reset_or_stall_during_part_n(
    s3_server: S3Server, proxy: FaultProxy, tmp_path: Path, action: str
) -> None:
    storage = s3_storage_on(s3_server, endpoint_url=proxy.endpoint_url, read_timeout=2.0)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    proxy.add_rule(Rule("partNumber=2", action, after_bytes=2 * MIB))

    info = storage.upload_file(source, KEY)

    assert proxy.fired == ["partNumber=2"]
    assert part_puts(proxy.requests).count(2) == 2  # sent again after the fault
    assert info.size == SIZE
    assert storage.verify(KEY, digest, deep=True).size == SIZE


@pytest.mark.parametrize("action", ["reset", STALL])
def test_streamed_write_survives_a_fault_during_a_part(
    s3_server: S3Server, proxy: FaultProxy, action: str
) -> None:
    storage = s3_storage_on(s3_server, endpoint_url=proxy.endpoint_url, read_timeout=2.0)
    proxy.add_rule(Rule("partNumber=1", action, after_bytes=MIB))
    data = os.urandom(2 * TEST_PART_SIZE + 10)
    with storage.open_writer(KEY) as writer:
        for offset in range(0, len(data), 300_000):
            writer.write(data[offset : offset + 300_000])
    assert proxy.fired == ["partNumber=1"]
    with storage.open(KEY) as stream:
        assert stream.read() == data


@pytest.mark.parametrize("action", ["reset", STALL])
def test_a_ranged_read_resumes_after_the_connection_drops(
    s3_server: S3Server, proxy: FaultProxy, tmp_path: Path, action: str
) -> None:
    direct = s3_storage_on(s3_server)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    direct.upload_file(source, KEY)
    chunk = direct.config.read_chunk_size
    storage = s3_storage_on(
        s3_server,
        endpoint_url=proxy.endpoint_url,
        read_timeout=2.0,
        bucket=direct.config.bucket,
    )
    # Cut two GETs' responses after 3 MiB: each re-issued GET starts from
    # the offset its range reached, not from the range's beginning.
    proxy.add_rule(Rule("GET /", action, direction="download", after_bytes=3 * MIB, times=2))

    with storage.open(KEY) as stream:
        assert stream.raw.reconnects == 0
        read = stream.read()
        reconnects = stream.raw.reconnects

    assert len(read) == SIZE
    assert hashlib.sha256(read).hexdigest() == digest
    # The reader re-issued each cut GET, unless the reset came before botocore
    # had read the response's headers: botocore then retries the request
    # itself, unseen by the reader (seen once under load: 1). The proxy's
    # count of GETs below is the exact check.
    assert 1 <= reconnects <= 2
    # Each range "bytes=FIRST-LAST" ends on a chunk boundary (or the object's
    # end); the GETs of one range start at its chunk boundary, then later.
    starts_by_end: dict[int, list[int]] = {}
    for request in proxy.requests:
        if request.method == "GET":
            first, _, last = request.headers["range"].removeprefix("bytes=").partition("-")
            starts_by_end.setdefault(int(last), []).append(int(first))
    ends = sorted(starts_by_end)
    assert ends == [min(end, SIZE) - 1 for end in range(chunk, SIZE + chunk, chunk)]
    for end, starts in starts_by_end.items():
        assert starts[0] == end // chunk * chunk and starts == sorted(starts), starts
        if action == "stall":
            # A stalled connection delivered all it relayed before going
            # silent: the re-issued GET starts past it.
            assert starts == sorted(set(starts)), starts
        # An RST may discard what the kernel had buffered but the reader had
        # not yet read, so after a reset the GET may start where the last did
        # (CI saw [0, 3145112, 3145112]); it never goes back.
    assert sum(len(starts) - 1 for starts in starts_by_end.values()) == 2


def test_kill_9_mid_upload_then_a_new_process_sends_only_missing_parts(
    s3_server: S3Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    parts = 6
    size = parts * TEST_PART_SIZE - 999
    source = tmp_path / "archive"
    digest = random_file(source, size)
    ledger_path = tmp_path / "ledger.json"
    bucket = s3_server.new_bucket()
    settings = {
        "config": {
            "bucket": bucket,
            "endpoint_url": proxy.endpoint_url,
            "access_key": s3_server.access_key,
            "secret_key": s3_server.secret_key,
            "part_size": TEST_PART_SIZE,
            "concurrency": 1,  # parts 1 and 2 acknowledged, 3 in flight
            "read_timeout": 300.0,
        },
        "ledger": str(ledger_path),
        "path": str(source),
        "key": KEY,
    }
    # Part 3 hangs: the process is killed while it waits for the answer.
    proxy.add_rule(Rule("partNumber=3", "stall", after_bytes=MIB))
    first = _start_child(settings)
    try:
        _wait_for(lambda: proxy.fired == ["partNumber=3"], 60, "part 3 to be sent")
        _wait_for(lambda: _recorded(ledger_path) == [1, 2], 30, "parts 1 and 2 recorded")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert secret_not_in_process_arguments(first.args, s3_server.secret_key)

    proxy.clear_rules()
    before = len(proxy.requests)
    second = _start_child(settings)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == f"uploaded {digest}"
    resent = part_puts(proxy.requests[before:])
    assert sorted(resent) == [3, 4, 5, 6]
    assert JsonFileLedger(ledger_path).pending(KEY) is None
    storage = s3_storage_on(s3_server, bucket=bucket)
    assert stored_sha256(storage, KEY) == digest
    assert storage.sweep_partials(0) == []


def _start_child(settings: dict) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.s3_upload_child"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None
    child.stdin.write(json.dumps(settings).encode())
    child.stdin.close()
    child.stdin = None  # sent: communicate() must not flush it again
    return child


def _recorded(ledger_path: Path) -> list[int]:
    if not ledger_path.exists():
        return []
    ledger = JsonFileLedger(ledger_path)
    state = ledger.pending(KEY)
    return sorted(ledger.parts(state.upload_id)) if state else []


def _wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def secret_not_in_process_arguments(args: object, secret: str) -> bool:
    return secret not in " ".join(map(str, args))  # type: ignore[call-overload]


def test_throttling_and_5xx_are_retried_per_part(
    s3_server: S3Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    # botocore's own retries are off: what brings the part through is the
    # per-part retry with backoff (storage/retry.py).
    storage = s3_storage_on(s3_server, endpoint_url=proxy.endpoint_url, max_attempts=1)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    proxy.add_rule(Rule("partNumber=2", "503", times=2))
    storage.upload_file(source, KEY)
    assert proxy.fired == ["partNumber=2", "partNumber=2"]
    assert part_puts(proxy.requests).count(2) == 3
    assert storage.verify(KEY, digest, deep=True).size == SIZE


def test_a_permanent_error_is_not_retried(s3_server: S3Server, proxy: FaultProxy) -> None:
    storage = s3_storage_on(s3_server, endpoint_url=proxy.endpoint_url)
    with pytest.raises(ObjectNotFound):
        storage.open(KEY)
    # One HEAD of the object (a 404 is final), then one of the bucket (it exists).
    heads = [r.target for r in proxy.requests if r.method == "HEAD"]
    assert len(heads) == 2 and KEY in heads[0] and KEY not in heads[1]
