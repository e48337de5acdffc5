"""Steps that change an app's state, and the guard the engine calls before
each of them.

Stopping, pausing, starting or resuming containers, swapping a volume's
data, restoring a database, and deciding to keep restored data are the
steps a crash can leave half done. Before each one the engine calls the
guard with the step's name and what it is about to touch. The service's
guard (snapshots.run_journal.RunGuard) checks there that the run still
holds its app's lease (fencing: a run that lost it must not act under the
run that took over) and writes the step to the run's journal before it
happens, so a recovery knows what to finish or undo. A guard that raises
stops the step, and the engine treats that like any failure of the step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# guard(step, details): e.g. guard("stop", {"containers": [...]}).
StepGuard = Callable[[str, Mapping[str, Any]], None]

# volumes: name -> staging dir about to be made and extracted into while the
# app runs (nothing the app uses is touched; a recovery deletes these dirs)
STAGE = "stage"
# databases: [{container, database, shadow, aside}]: databases a restore may
# make in the app's running database servers, to load its dumps into while
# the app runs (engine.dumps.mysql_shadow); a recovery drops them
SHADOW = "shadow"
STOP = "stop"  # containers: ids about to be stopped
PAUSE = "pause"  # containers: ids about to be paused
START = "start"  # containers: ids about to be started (or unpaused)
SWAP = "swap"  # volume: name, dir: the volume's directory (holding _data)
# container: id of the database container about to be restored; "swap":
# {database, shadow, aside, charset, collation} when its tables are swapped
# in from a shadow database rather than loaded (undone by swapping back)
DATABASE = "database"
# containers, volumes, networks: names about to be created for an app that has
# nothing on this host (a migration); undone by removing those of them that
# carry the app's project label
RECREATE = "recreate"
COMMIT = "commit"  # the restored data is kept from now on: finish, never undo
ROLLBACK = "rollback"  # undoing a failed restore


def no_guard(_step: str, _details: Mapping[str, Any]) -> None:
    """For callers with no lease or journal (benchmarks, engine tests)."""
