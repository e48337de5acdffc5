"""A drill of one archive's databases: each database container's dumps
restored into a sandbox (sandbox.py) of the same image, then checked:
the server started, every dumped database exists, and each table has the
rows counted when the dump was made (DumpFile.row_counts).

The result is per database, in words an operator can act on: a failed
check names the table and both counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from engine.drill import checks
from engine.drill.deadline import Deadline, DrillTimeout
from engine.drill.sandbox import Limits, kill_labelled, sandbox
from engine.dumps import DumpFile, restore_database, wait_until_ready
from engine.errors import EngineError
from engine.progress import Progress, ProgressCallback, no_progress

ImageFor = Callable[[str, list[dict[str, Any]]], tuple[str | None, str]]
DEFAULT_LIMITS = Limits()
MAX_MISMATCHES = 50  # per database, in the result
DRILLED_ENGINES = ("mysql", "mariadb", "postgres")
# MongoDB dumps and restores exist (engine/dumps/mongo.py), but no MongoDB
# server image can run where this was built (no registry), so a sandbox
# restore and its counts could never be tested: skipped, saying so.
NOT_DRILLED = {
    "mongo": "drills of MongoDB databases are not supported yet (the sandbox restore could "
    "not be tested without a MongoDB server image); the deep verify checked the dump's "
    "structure only",
}

__all__ = ["DatabaseResult", "DrillTimeout", "compare_counts", "drill_databases"]


@dataclass
class DatabaseResult:
    container: str
    engine: str
    database: str | None
    ok: bool
    image: str = ""
    skipped: bool = False
    reason: str = ""
    tables: int | None = None  # restored
    rows: int | None = None  # restored, all tables
    tables_recorded: int | None = None
    rows_recorded: int | None = None
    counts_recorded: bool = False
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the container's start, restore and checks

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def compare_counts(recorded: dict[str, int], restored: dict[str, int]) -> list[str]:
    """What differs, one sentence per table, missing and extra tables too."""
    problems = []
    for table in sorted(recorded):
        if table not in restored:
            problems.append(f"table {table}: missing after the restore "
                            f"(expected {recorded[table]} rows)")  # fmt: skip
        elif restored[table] != recorded[table]:
            problems.append(f"table {table}: expected {recorded[table]} rows (counted "
                            f"when the dump was made), found {restored[table]} after the "
                            "restore")  # fmt: skip
    problems += [f"table {t}: found after the restore ({restored[t]} rows) but not in the "
                 "dump's count" for t in sorted(restored) if t not in recorded]  # fmt: skip
    return problems


def drill_databases(
    client: docker.DockerClient,
    drill_id: str,
    entries: list[dict[str, Any]],
    dump_files: dict[str, Path],
    image_for: ImageFor,
    *,
    deadline: Deadline,
    limits: Limits = DEFAULT_LIMITS,
    progress: ProgressCallback = no_progress,
) -> list[DatabaseResult]:
    """ENTRIES: backup.json's database entries; DUMP_FILES: archive name ->
    extracted file. IMAGE_FOR(container, entries) gives the image id to use
    and where it came from, or (None, why not). Past DEADLINE, the running
    step is stopped (its sandbox removed) and DrillTimeout raised."""
    by_container: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_container.setdefault(entry["container"], []).append(entry)
    results: list[DatabaseResult] = []
    for index, (container, group) in enumerate(sorted(by_container.items())):
        engine = group[0]["engine"]
        image, source = image_for(container, group)
        if image is None or engine not in DRILLED_ENGINES:
            why = source if image is None else NOT_DRILLED.get(
                engine, f"drills of {engine} databases are not supported yet")  # fmt: skip
            # One result per database; a whole-server dump (MongoDB's) is one
            # result of its own, so a snapshot of only that is not "passed".
            named = [e.get("database") for e in group if e.get("database")] or [None]
            results += [DatabaseResult(container, engine, name, ok=True, skipped=True,
                                       reason=why) for name in named]  # fmt: skip
            continue
        dumps = [DumpFile.from_json(e, dump_files[e["archive_name"]]) for e in group]
        progress(Progress("drilling", index, len(by_container), container))
        results += _drill_container(client, drill_id, index, engine, image, dumps, deadline,
                                    limits)  # fmt: skip
    return results


def _drill_container(
    client: docker.DockerClient,
    drill_id: str,
    index: int,
    engine: str,
    image: str,
    dumps: list[DumpFile],
    deadline: Deadline,
    limits: Limits,
) -> list[DatabaseResult]:
    container = dumps[0].container
    deadline.check(f"before the sandbox of {container} was started")
    steps: list[str] = []  # the steps begun, the last one is what the limit interrupts
    # Past the limit the sandbox is killed (the exec this thread waits on ends
    # with it), then removed on the way out as always: whatever error the
    # step then raises, the time limit is the reason.
    with deadline.watchdog(lambda: kill_labelled(client, drill_id)) as fired:
        try:
            results = _in_sandbox(client, drill_id, index, engine, image, dumps, deadline,
                                  limits, steps)  # fmt: skip
        except Exception:
            if not fired.is_set():
                raise
    if fired.is_set():
        step = steps[-1] if steps else "the start of the sandbox"
        raise deadline.reached(f"during {step} in the sandbox of {container} (the sandbox "
                               "was stopped and removed)")  # fmt: skip
    return results


def _in_sandbox(
    client: docker.DockerClient,
    drill_id: str,
    index: int,
    engine: str,
    image: str,
    dumps: list[DumpFile],
    deadline: Deadline,
    limits: Limits,
    steps: list[str],
) -> list[DatabaseResult]:
    started = time.monotonic()
    container = dumps[0].container
    databases = [d for d in dumps if d.database is not None]

    def every(ok: bool, reason: str) -> list[DatabaseResult]:
        return [DatabaseResult(container, engine, d.database, ok=ok, image=image, reason=reason,
                               counts_recorded=d.row_counts is not None,
                               seconds=round(time.monotonic() - started, 3))
                for d in databases]  # fmt: skip

    try:
        with sandbox(client, drill_id, index, engine, image, limits) as db:  # type: ignore[arg-type]
            steps.append("the start of its server")
            try:
                wait_until_ready(client, db, timeout=min(300.0, max(1.0, deadline.left())))
            except EngineError as exc:
                return every(False, f"the server did not start: {exc}")
            steps.append("the restore of its dumps")
            try:
                restore_database(client, db, dumps)
            except EngineError as exc:
                return every(False, f"the dump did not restore: {exc}")
            steps.append("the checks of the restored databases")
            present = (checks.postgres_databases if engine == "postgres"
                       else checks.mysql_databases)(client, db)  # fmt: skip
            return [_check(client, db, d, present, image, started) for d in databases]
    except EngineError as exc:
        return every(False, str(exc))


def _check(
    client: docker.DockerClient,
    db: Any,
    dump: DumpFile,
    present: set[str],
    image: str,
    started: float,
) -> DatabaseResult:
    database = dump.database or ""
    result = DatabaseResult(dump.container, dump.engine, database, ok=False, image=image,
                            counts_recorded=dump.row_counts is not None)  # fmt: skip
    if database not in present:
        result.reason = f"database {database} does not exist after the restore"
    else:
        counter = (checks.postgres_row_counts if dump.engine == "postgres"
                   else checks.mysql_row_counts)  # fmt: skip
        try:
            restored = counter(client, db, database)
        except EngineError as exc:
            result.reason = f"the query on {database} failed: {exc}"
        else:
            result.tables, result.rows = len(restored), sum(restored.values())
            if dump.row_counts is None:
                result.ok = True
                result.reason = ("row counts were not recorded at backup time (an older "
                                 "archive): the server started, the database exists and "
                                 "answers a query")  # fmt: skip
            else:
                recorded = dump.row_counts
                result.tables_recorded, result.rows_recorded = len(recorded), sum(recorded.values())
                problems = compare_counts(recorded, restored)
                result.mismatches = problems[:MAX_MISMATCHES]
                result.ok = not problems
                if problems:
                    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                    result.reason = f"{problems[0]}{more}"
    result.seconds = round(time.monotonic() - started, 3)
    return result
