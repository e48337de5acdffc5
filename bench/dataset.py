"""The benchmark's data: a seeded, deterministic volume-like tree, loaded into
real Docker volumes of a Compose-labelled app, so the backup is measured the
way a worker runs it (discovery by label, volume mountpoints).

Two volumes: ~35 % small text files (0.2-48 KiB, unicode names, symlinks
(some dangling, long targets), odd modes), ~30 % incompressible binaries
(64 KiB-16 MiB) and ~35 % large semi-compressible files (48-128 MiB).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

APP_ID = "benchapp"
APP_IMAGE = "localtest/app:1"  # built by scripts/testimages/build.sh; never pulled
VOLUMES = ("files", "data")  # Compose keys; volume names are benchapp_<key>
PROJECT_LABEL = "com.docker.compose.project"
WORDS = (  # noqa: SIM905 - easier to read than a list
    "the quick brown fox jumps over lazy dog request handled status path user admin "
    "config value error warning info debug session token cache hit miss query select "
    "insert update delete from where order limit function return class import"
).split()
NAMES = ["données", "日本語", "résumé", "Ünïcödé", "emoji-🎉", "space name", "ñandú"]


def _text(rng: random.Random, size: int) -> bytes:
    words = rng.choices(WORDS, k=size // 5 + 8)
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    return "\n".join(lines).encode()[:size]


def _semi(rng: random.Random, size: int) -> bytes:
    """About 2:1 compressible: text blocks with random blocks between."""
    block = 64 * 1024
    text = _text(rng, block)
    parts = []
    for i in range(0, size, block):
        parts.append(rng.randbytes(block // 2) + text[i % 997 :][: block // 2])
    return b"".join(parts)[:size]


def make_tree(files_vol: Path, data_vol: Path, total: int, seed: int) -> tuple[int, int]:
    """Fill the two volume roots with TOTAL bytes; returns (bytes, entries)."""
    rng = random.Random(seed)
    written = entries = 0
    small_end, binary_end = total * 0.35, total * 0.65
    index = 0
    while written < total:
        if written < small_end:
            d = files_vol / f"site{index // 2000}" / f"d{(index // 100) % 20}"
            if index % 100 == 0:
                d.mkdir(parents=True, exist_ok=True)
                entries += 1
            size = rng.randint(200, 48 * 1024)
            name = (
                f"{NAMES[index % len(NAMES)]}-{index}.txt" if index % 50 == 0 else f"f{index}.php"
            )
            path = d / name
            path.write_bytes(_text(rng, size))
            if index % 37 == 0:
                os.chmod(path, rng.choice([0o600, 0o640, 0o755, 0o4755, 0o2750, 0o400]))
            if index % 41 == 0:
                (d / f"link{index}").symlink_to(name)
                (d / f"dangling{index}").symlink_to("../../../nowhere/" + "x" * 120)
                entries += 2
        elif written < binary_end:
            d = data_vol / "bin"
            d.mkdir(parents=True, exist_ok=True)
            size = rng.randint(64 * 1024, 16 << 20)
            (d / f"blob{index}.bin").write_bytes(rng.randbytes(size))
        else:
            d = data_vol / "large"
            d.mkdir(parents=True, exist_ok=True)
            size = min(rng.randint(48 << 20, 128 << 20), max(total - written, 1 << 20))
            (d / f"table{index}.ibd").write_bytes(_semi(rng, size))
        written += size
        entries += 1
        index += 1
    os.chmod(files_vol, 0o1777)  # noqa: S103 - an odd mode, on purpose
    return written, entries


@contextlib.contextmanager
def docker_app(total: int, seed: int) -> Iterator[tuple[list[Path], int, int]]:
    """A Compose-labelled app `benchapp`: two named volumes filled by
    make_tree and a stopped app container mounting them. Yields (volume
    mountpoints, bytes, entries); removes all of it afterwards."""
    import docker

    client = docker.from_env()
    _remove(client)  # leftovers of an interrupted run
    labels = {PROJECT_LABEL: APP_ID, "com.docker.compose.version": "2.24.0"}
    volumes = [
        client.volumes.create(f"{APP_ID}_{key}", labels=labels | {"com.docker.compose.volume": key})
        for key in VOLUMES
    ]
    try:
        client.images.get(APP_IMAGE)  # raises ImageNotFound: never pull
        service = {
            "com.docker.compose.service": "app",
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
        }
        mounts = {v.name: {"bind": f"/srv/{v.name}", "mode": "rw"} for v in volumes}
        client.containers.create(
            APP_IMAGE, ["sleep", "3600"], name=f"{APP_ID}-app-1", labels=labels | service,
            volumes=mounts,
        )  # fmt: skip
        roots = [Path(v.attrs["Mountpoint"]) for v in volumes]
        written, entries = make_tree(roots[0], roots[1], total, seed)
        yield roots, written, entries
    finally:
        _remove(client)


def _remove(client: object) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(f"{APP_ID}-app-1").remove(force=True)  # type: ignore[attr-defined]
    for key in VOLUMES:
        with contextlib.suppress(docker.errors.NotFound):
            client.volumes.get(f"{APP_ID}_{key}").remove(force=True)  # type: ignore[attr-defined]
