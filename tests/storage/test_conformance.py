"""One behaviour for every storage backend (see conftest.BACKENDS).

Only the public Storage protocol is used here, so anything a backend does
differently fails for that backend alone. S3 runs it on two real servers
(moto and s3rver, see conftest.S3_BACKENDS)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import ObjectNotFound, StorageError, StorageFull
from storage.base import TEMP_MARKER, Storage
from storage.keys import partial_key, validate_key, validate_prefix

KEY = "wordpress_ab12c/backup_20260105_103000_3fa2c1.tar.zst.age"

HOSTILE_KEYS = [
    "../x",
    "/abs",
    "a/../b",
    "a\\b",
    "a//b",
    "",
    "a/.partial-x",
    "a\x00b",
    "a/./b",
    ".",
    "a/",
    "a\nb",
    "a/\x7f",
]


def put(storage: Storage, key: str, data: bytes) -> None:
    with storage.open_writer(key) as writer:
        writer.write(data)


def get(storage: Storage, key: str) -> bytes:
    with storage.open(key) as f:
        return f.read()


def keys(storage: Storage, prefix: str = "") -> list[str]:
    return [info.key for info in storage.list(prefix)]


# -- keys (backend independent) ---------------------------------------------


@pytest.mark.parametrize(
    "key",
    [KEY, "wordpress001/backup_x.tar.gz.sha256", "a", "a/b/c", "app/.hidden", "app/ü ñ.tar"],
)
def test_validate_key_accepts_and_returns_plain_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_validate_key_rejects_hostile_keys_with_the_key_in_the_message(key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key") as caught:
        validate_key(key)
    assert repr(key) in str(caught.value)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("../x", "'..' segment"),
        ("/abs", "relative"),
        ("a\\b", "backslash"),
        ("a//b", "empty segment"),
        ("", "empty"),
        ("a/.partial-x", "temporary marker"),
        ("a\x00b", "control character"),
        ("a/" + "x" * 256, "255 bytes"),
        ("a/" * 600 + "b", "1024 bytes"),
    ],
)
def test_validate_key_says_why(key: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "wordpress_ab12c/backup_2026", "a/b/"])
def test_validate_prefix_accepts_empty_and_trailing_slash(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", [p for p in HOSTILE_KEYS if p not in ("", "a/")] + ["/", "a//"])
def test_validate_prefix_rejects_hostile_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid storage prefix"):
        validate_prefix(prefix)


def test_partial_key_is_unique_beside_the_key_and_marked() -> None:
    first, second = partial_key(KEY), partial_key(KEY)
    assert first != second
    directory, _, name = first.rpartition("/")
    assert directory == "wordpress_ab12c"
    assert name.startswith(TEMP_MARKER) and name.endswith("-" + KEY.rpartition("/")[2])
    with pytest.raises(ValueError):
        validate_key(first)  # a temp name can never be used as a key
    assert len(partial_key("a/" + "x" * 255).rpartition("/")[2].encode()) <= 255


# -- writing and reading ------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000])
def test_round_trip_small(storage: Storage, size: int) -> None:
    data = os.urandom(size)
    with storage.open_writer(KEY) as writer:
        assert writer.write(data) == size
    assert get(storage, KEY) == data
    assert storage.stat(KEY).size == size


def test_round_trip_multi_megabyte_streamed_in_many_writes(storage: Storage) -> None:
    # Odd chunk sizes so no write lines up with any internal buffer.
    digest = hashlib.sha256()
    total = 0
    with storage.open_writer(KEY) as writer:
        for i in range(500):
            # Mostly small writes, a few larger than any sane write buffer.
            chunk = os.urandom(7919 + 13 * i if i % 100 else 1024 * 1024 + i)
            digest.update(chunk)
            total += writer.write(chunk)
        info = writer.commit()
    assert total > 5 * 1024 * 1024
    assert (info.key, info.size) == (KEY, total)

    read_back = hashlib.sha256()
    with storage.open(KEY) as f:
        while block := f.read(65536):
            read_back.update(block)
    assert read_back.hexdigest() == digest.hexdigest()


def test_an_opened_object_cannot_be_changed_through_its_stream(storage: Storage) -> None:
    put(storage, KEY, b"archive")
    # Refusing (io.UnsupportedOperation, an OSError) is the best answer; a
    # private copy is fine too; changing the stored object is not.
    with storage.open(KEY) as f, contextlib.suppress(OSError):
        f.write(b"XX")
    assert get(storage, KEY) == b"archive"


def test_written_data_is_copied_at_write_time(storage: Storage) -> None:
    # The engine reuses its buffers: mutating one after write() must not matter.
    buffer = bytearray(b"first")
    with storage.open_writer(KEY) as writer:
        writer.write(buffer)
        buffer[:] = b"XXXXX"
        writer.write(memoryview(b"-second"))
    assert get(storage, KEY) == b"first-second"


def test_nothing_is_visible_before_commit(storage: Storage) -> None:
    writer = storage.open_writer(KEY)
    writer.write(b"half of it")
    assert not storage.exists(KEY)
    assert keys(storage) == []
    with pytest.raises(ObjectNotFound):
        storage.stat(KEY)
    with pytest.raises(ObjectNotFound):
        storage.open(KEY)

    info = writer.commit()
    assert storage.exists(KEY)
    assert keys(storage) == [KEY]
    assert storage.stat(KEY) == info


def test_commit_returns_the_object_info(storage: Storage) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    writer = storage.open_writer(KEY)
    writer.write(b"12345")
    info = writer.commit()
    assert (info.key, info.size) == (KEY, 5)
    assert info.modified.tzinfo is not None
    assert before <= info.modified <= datetime.now(UTC) + timedelta(seconds=5)


def test_commit_is_idempotent_inside_with(storage: Storage) -> None:
    with storage.open_writer(KEY) as writer:
        writer.write(b"data")
        first = writer.commit()
        assert writer.commit() == first
    assert get(storage, KEY) == b"data"


def test_write_after_commit_or_abort_is_refused(storage: Storage) -> None:
    committed = storage.open_writer(KEY)
    committed.commit()
    with pytest.raises(ValueError, match="committed"):
        committed.write(b"more")
    aborted = storage.open_writer("app/other")
    aborted.abort()
    with pytest.raises(ValueError, match="aborted"):
        aborted.write(b"more")
    with pytest.raises(ValueError, match="aborted"):
        aborted.commit()
    assert get(storage, KEY) == b""
    assert not storage.exists("app/other")


def test_abort_leaves_nothing(storage: Storage) -> None:
    writer = storage.open_writer(KEY)
    writer.write(b"x" * 10_000)
    writer.abort()
    writer.abort()  # twice is harmless
    assert not storage.exists(KEY)
    assert keys(storage) == []
    assert storage.sweep_partials(0) == []  # no temp object either


def test_abort_after_commit_keeps_the_object(storage: Storage) -> None:
    writer = storage.open_writer(KEY)
    writer.write(b"kept")
    writer.commit()
    writer.abort()
    assert get(storage, KEY) == b"kept"


def test_exception_in_with_leaves_nothing_and_propagates(storage: Storage) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), storage.open_writer(KEY) as writer:
        writer.write(b"x" * 10_000)
        raise Boom
    assert not storage.exists(KEY)
    assert keys(storage) == []
    assert storage.sweep_partials(0) == []


def test_abort_inside_with_then_normal_exit_commits_nothing(storage: Storage) -> None:
    with storage.open_writer(KEY) as writer:
        writer.write(b"discarded")
        writer.abort()
    assert not storage.exists(KEY)


def test_overwrite_replaces_the_object(storage: Storage) -> None:
    put(storage, KEY, b"version one, longer")
    put(storage, KEY, b"version two")
    assert get(storage, KEY) == b"version two"
    assert storage.stat(KEY).size == len(b"version two")
    assert keys(storage) == [KEY]


def test_failed_overwrite_keeps_the_old_object(storage: Storage) -> None:
    put(storage, KEY, b"old")
    with pytest.raises(RuntimeError), storage.open_writer(KEY) as writer:
        writer.write(b"new")
        raise RuntimeError("interrupted")
    assert get(storage, KEY) == b"old"


def test_concurrent_writers_of_one_key_do_not_mix(storage: Storage) -> None:
    first, second = storage.open_writer(KEY), storage.open_writer(KEY)
    first.write(b"A" * 1000)
    second.write(b"B" * 10)
    first.commit()
    assert get(storage, KEY) == b"A" * 1000
    second.commit()
    assert get(storage, KEY) == b"B" * 10


# -- stat, list, delete -------------------------------------------------------


def test_stat_reports_size(storage: Storage) -> None:
    put(storage, KEY, b"x" * 12345)
    info = storage.stat(KEY)
    assert (info.key, info.size) == (KEY, 12345)


def test_missing_objects_raise_object_not_found(storage: Storage) -> None:
    for call in (storage.open, storage.stat, storage.delete):
        with pytest.raises(ObjectNotFound, match="no object"):
            call("app/missing")
    assert not storage.exists("app/missing")


def test_object_not_found_is_a_storage_error() -> None:
    # Callers that only know StorageError still catch missing objects.
    assert issubclass(ObjectNotFound, StorageError)


LISTED = ["b/2", "a/2", "a/10", "a/1", "ab/1", "a/sub/x", "top"]


def test_list_everything_sorted_by_key(storage: Storage) -> None:
    for key in LISTED:
        put(storage, key, key.encode())
    assert keys(storage) == sorted(LISTED)
    assert keys(storage) == ["a/1", "a/10", "a/2", "a/sub/x", "ab/1", "b/2", "top"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a/", ["a/1", "a/10", "a/2", "a/sub/x"]),
        ("a", ["a/1", "a/10", "a/2", "a/sub/x", "ab/1"]),  # a string prefix, as in S3
        ("a/1", ["a/1", "a/10"]),
        ("a/sub/", ["a/sub/x"]),
        ("ab/1", ["ab/1"]),
        ("t", ["top"]),
        ("zzz/", []),
        ("a/2/", []),  # an object is not a directory
    ],
)
def test_list_with_prefix(storage: Storage, prefix: str, expected: list[str]) -> None:
    for key in LISTED:
        put(storage, key, key.encode())
    assert keys(storage, prefix) == expected


def test_list_reports_sizes(storage: Storage) -> None:
    put(storage, "a/one", b"1")
    put(storage, "a/three", b"333")
    assert [(i.key, i.size) for i in storage.list("a/")] == [("a/one", 1), ("a/three", 3)]


def test_list_of_an_empty_storage_is_empty(storage: Storage) -> None:
    assert keys(storage) == []
    assert keys(storage, "app/") == []


def test_list_never_shows_objects_being_written(storage: Storage) -> None:
    put(storage, "a/done", b"done")
    writer = storage.open_writer("a/in-progress")
    writer.write(b"partial")
    assert keys(storage) == ["a/done"]
    assert keys(storage, "a/") == ["a/done"]
    writer.abort()


def test_delete_removes_only_that_object(storage: Storage) -> None:
    put(storage, "a/1", b"1")
    put(storage, "a/2", b"2")
    storage.delete("a/1")
    assert not storage.exists("a/1")
    with pytest.raises(ObjectNotFound):
        storage.open("a/1")
    with pytest.raises(ObjectNotFound):
        storage.delete("a/1")
    assert keys(storage) == ["a/2"]
    assert get(storage, "a/2") == b"2"


def test_write_again_after_deleting_an_apps_last_object(storage: Storage) -> None:
    put(storage, KEY, b"one")
    storage.delete(KEY)
    assert keys(storage) == []
    put(storage, KEY, b"two")
    assert get(storage, KEY) == b"two"


# -- invalid keys are rejected by every method ----------------------------------


@pytest.mark.parametrize("key", HOSTILE_KEYS)
@pytest.mark.parametrize("method", ["open_writer", "open", "stat", "exists", "delete"])
def test_every_method_rejects_hostile_keys(storage: Storage, method: str, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        getattr(storage, method)(key)
    assert keys(storage) == []
    assert storage.sweep_partials(0) == []


@pytest.mark.parametrize("prefix", [p for p in HOSTILE_KEYS if p not in ("", "a/")] + ["/", "a//"])
def test_list_rejects_hostile_prefixes(storage: Storage, prefix: str) -> None:
    # Raised by list() itself, not later while iterating.
    with pytest.raises(ValueError, match="invalid storage prefix"):
        storage.list(prefix)


# -- partials -----------------------------------------------------------------------


def test_sweep_partials_keeps_young_ones_and_removes_old_ones(storage: Storage) -> None:
    put(storage, "app/done", b"done")
    writer = storage.open_writer("app/crashed")
    writer.write(b"half")

    assert storage.sweep_partials(3600) == []
    removed = storage.sweep_partials(0)

    assert len(removed) == 1
    directory, _, name = removed[0].rpartition("/")
    assert directory == "app" and name.startswith(TEMP_MARKER)
    assert storage.sweep_partials(0) == []
    assert keys(storage) == ["app/done"]
    assert get(storage, "app/done") == b"done"
    # The writer whose temp object was swept can no longer commit anything.
    with pytest.raises(StorageError, match="disappeared"):
        writer.commit()
    assert not storage.exists("app/crashed")


def test_sweep_partials_leaves_a_young_writer_able_to_commit(storage: Storage) -> None:
    writer = storage.open_writer(KEY)
    writer.write(b"still going")
    assert storage.sweep_partials(3600) == []
    writer.commit()
    assert get(storage, KEY) == b"still going"


def test_sweep_partials_rejects_negative_ages(storage: Storage) -> None:
    with pytest.raises(ValueError):
        storage.sweep_partials(-1)


def test_free_bytes_is_a_count_or_unknown(storage: Storage) -> None:
    free = storage.free_bytes()
    assert free is None or (isinstance(free, int) and free >= 0)


# -- a destination that fills up (conftest.SMALL_BACKENDS) ---------------------------


def test_full_storage_raises_storage_full_and_keeps_earlier_objects(small_storage: Storage) -> None:
    earlier = os.urandom(300 * 1024)
    put(small_storage, "app/earlier", earlier)
    free_before = small_storage.free_bytes()

    with pytest.raises(StorageFull, match="full"), small_storage.open_writer(KEY) as writer:
        for _ in range(16):  # 2 MiB into 1 MiB
            writer.write(os.urandom(128 * 1024))

    assert not small_storage.exists(KEY)
    assert keys(small_storage) == ["app/earlier"]
    assert small_storage.sweep_partials(0) == []
    assert get(small_storage, "app/earlier") == earlier
    # The space the failed write took is given back.
    assert free_before is not None
    assert small_storage.free_bytes() == free_before
    # And the destination still works once there is room.
    put(small_storage, KEY, b"fits")
    assert get(small_storage, KEY) == b"fits"


def test_full_storage_error_names_the_storage_not_the_data(small_storage: Storage) -> None:
    marker = b"SECRET-DATA-MARKER"
    with pytest.raises(StorageFull) as caught, small_storage.open_writer(KEY) as writer:
        for _ in range(64):
            writer.write(marker * 4096)
    message = str(caught.value)
    assert small_storage.name in message
    assert "SECRET" not in message


def test_deleting_gives_the_space_back(small_storage: Storage) -> None:
    free_empty = small_storage.free_bytes()
    for _ in range(3):  # 3 x 600 KiB through 1 MiB: only fits if delete frees space
        put(small_storage, KEY, os.urandom(600 * 1024))
        small_storage.delete(KEY)
    assert small_storage.free_bytes() == free_empty


def test_discard_partials_removes_only_that_keys_dead_writes(storage: Storage) -> None:
    """Recovery after a crash: the dead writer's temp object goes whatever its
    age; other keys' writes in flight and committed objects stay."""
    put(storage, "app/keep.tar.zst", b"old")
    dead = storage.open_writer("app/b1.tar.zst")
    dead.write(b"half")
    live = storage.open_writer("app/b2.tar.zst")
    live.write(b"other")
    removed = storage.discard_partials("app/b1.tar.zst")
    assert len(removed) == 1 and removed[0].endswith("-b1.tar.zst") and TEMP_MARKER in removed[0]
    assert storage.discard_partials("app/b1.tar.zst") == []
    live.commit()
    assert get(storage, "app/b2.tar.zst") == b"other"
    assert get(storage, "app/keep.tar.zst") == b"old"
    with pytest.raises(StorageError):
        dead.commit()
    assert not storage.exists("app/b1.tar.zst")
    with pytest.raises(ValueError):
        storage.discard_partials("../x")
