"""GET snapshots: filters, sort, pagination, totals; bad parameters → 400."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from snapshots.models import Snapshot
from tests.api.conftest import API, MakeSnapshot, envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(make_snapshot: MakeSnapshot) -> list[Snapshot]:
    """Seven snapshots of two apps, one minute apart, sizes not in time order."""
    sizes = [500, 100, 700, None, 300, 300, 900]
    apps = ["alpha", "beta", "alpha", "alpha", "beta", "alpha", "beta"]
    made = []
    for minute, (app_id, size) in enumerate(zip(apps, sizes, strict=True)):
        status = Snapshot.Status.FAILED if size is None else Snapshot.Status.COMPLETED
        made.append(make_snapshot(app_id=app_id, minutes=minute, size_bytes=size, status=status))
    return made


def ids(data: dict) -> list[str]:
    return [row["backup_id"] for row in data["snapshots"]]


def test_newest_first_by_default_with_totals(api: APIClient, rows: list[Snapshot]) -> None:
    data = envelope(api.get(f"{API}/snapshots"), 200)
    assert ids(data) == [s.backup_id for s in reversed(rows)]
    assert data["total"] == 7 and data["total_size_bytes"] == 2800
    assert data["page"] == 1 and data["pages"] == 1
    first = data["snapshots"][0]
    assert first["app_id"] == "beta" and first["size_bytes"] == 900
    assert first["status"] == "completed" and first["parent_backup_id"] is None
    assert "contents" not in first  # detail only


def test_filter_by_app_and_status(api: APIClient, rows: list[Snapshot]) -> None:
    data = envelope(api.get(f"{API}/snapshots", {"app_id": "alpha"}), 200)
    assert ids(data) == [rows[i].backup_id for i in (5, 3, 2, 0)]
    assert data["total"] == 4 and data["total_size_bytes"] == 1500
    data = envelope(api.get(f"{API}/snapshots", {"app_id": "alpha", "status": "failed"}), 200)
    assert ids(data) == [rows[3].backup_id] and data["total_size_bytes"] == 0
    data = envelope(api.get(f"{API}/snapshots", {"app_id": "nobody"}), 200)
    assert data == {**data, "total": 0, "snapshots": [], "total_size_bytes": 0}


def test_filter_by_host(api: APIClient, make_snapshot: MakeSnapshot) -> None:
    on_a = make_snapshot(app_id="alpha", host_id="host-a")
    on_b = make_snapshot(app_id="alpha", host_id="host-b", minutes=1)
    assert ids(envelope(api.get(f"{API}/snapshots", {"host_id": "host-b"}), 200)) == [
        on_b.backup_id
    ]
    both = envelope(api.get(f"{API}/snapshots", {"app_id": "alpha"}), 200)
    assert ids(both) == [on_b.backup_id, on_a.backup_id]
    assert envelope(api.get(f"{API}/snapshots", {"host_id": "nowhere"}), 200)["total"] == 0
    assert "host_id" in envelope(api.get(f"{API}/snapshots", {"host_id": "a b/../c"}), 400)


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("created_at", [0, 1, 2, 3, 4, 5, 6]),
        ("-created_at", [6, 5, 4, 3, 2, 1, 0]),
        # Equal sizes fall back to creation order; unknown sizes go last.
        ("size_bytes", [1, 4, 5, 0, 2, 6, 3]),
        ("-size_bytes", [6, 2, 0, 5, 4, 1, 3]),
    ],
)
def test_sort(api: APIClient, rows: list[Snapshot], sort: str, order: list[int]) -> None:
    data = envelope(api.get(f"{API}/snapshots", {"sort": sort}), 200)
    assert ids(data) == [rows[i].backup_id for i in order]


def test_pages_cover_everything_once(api: APIClient, rows: list[Snapshot]) -> None:
    seen: list[str] = []
    for page in (1, 2, 3):
        data = envelope(api.get(f"{API}/snapshots", {"page": page, "page_size": 3}), 200)
        assert data["total"] == 7 and data["pages"] == 3 and data["page_size"] == 3
        seen += ids(data)
    assert seen == [s.backup_id for s in reversed(rows)]
    past_the_end = envelope(api.get(f"{API}/snapshots", {"page": 4, "page_size": 3}), 200)
    assert past_the_end["snapshots"] == [] and past_the_end["total"] == 7


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "name"}, "sort"),
        ({"sort": "created_at;drop table"}, "sort"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "two"}, "page"),
        ({"page": "99999999999999999999"}, "page"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "100000"}, "page_size"),
        ({"page_size": "1.5"}, "page_size"),
        ({"status": "done"}, "status"),
        ({"status": ""}, "status"),
        ({"app_id": "Not An App"}, "app_id"),
        ({"page_size": ""}, "page_size"),
    ],
)
def test_invalid_parameters_are_400_naming_the_field(
    api: APIClient, rows: list[Snapshot], params: dict, field: str
) -> None:
    response = api.get(f"{API}/snapshots", params)
    data = envelope(response, 400)
    assert field in data
    assert response.json()["message"].startswith(f"invalid input: {field}: ")


def test_a_page_takes_a_fixed_number_of_queries(
    api: APIClient, make_snapshot: MakeSnapshot, django_assert_max_num_queries
) -> None:
    parent = make_snapshot()
    for minute in range(1, 30):
        make_snapshot(minutes=minute, parent=parent, error="x")
    api.get(f"{API}/snapshots")  # the key's last_used_at write happens once
    # key lookup, totals, page: never one query per row
    with django_assert_max_num_queries(3):
        data = envelope(api.get(f"{API}/snapshots", {"page_size": 30}), 200)
    assert len(data["snapshots"]) == 30 and data["snapshots"][0]["error"] == "x"
    assert data["snapshots"][0]["parent_backup_id"] == parent.backup_id


def test_the_fast_row_representation_equals_drfs(make_snapshot: MakeSnapshot) -> None:
    from datetime import timedelta

    from snapshots.api.serializers import SnapshotDetailSerializer, SnapshotSerializer

    parent = make_snapshot(contents={"volumes": ["v"]})
    child = make_snapshot(minutes=3, parent=parent, kind="incremental", error="boom")
    Snapshot.objects.filter(pk=child.pk).update(
        started_at=child.created_at, finished_at=child.created_at + timedelta(seconds=1.5)
    )
    for snapshot in Snapshot.objects.select_related("parent"):
        fast = SnapshotSerializer(snapshot).data
        assert fast == SnapshotSerializer().generic_representation(snapshot)
        detail = SnapshotDetailSerializer(snapshot, context={"children": ["x"]})
        assert detail.data == detail.generic_representation(snapshot)
    child.refresh_from_db()
    assert SnapshotSerializer(child).data["duration_seconds"] == 1.5
    assert SnapshotSerializer(child).data["created_at"].endswith("Z")
