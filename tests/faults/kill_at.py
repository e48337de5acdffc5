"""Run `manage.py backup ...` in this process and SIGKILL it at a chosen
point, as a power cut or the OOM killer would: no `finally`, no handler.

    python -m tests.faults.kill_at guard:<step>[+<seconds>] backup restore APP BACKUP_ID
    python -m tests.faults.kill_at call:<module>:<Class.method> backup create APP ...

guard:<step> kills at the first journal entry of that step (engine.steps),
after the entry is written and before the step is done; with +<seconds>,
that long after the step began (in the middle of a database restore, say).
call:... kills on entry to that function. Only the test's process is
instrumented; the product's code is the one that ships."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from typing import Any


def _kill_after(seconds: float) -> None:
    def kill() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if seconds <= 0:
        kill()
    threading.Timer(seconds, kill).start()


def _arm_guard(step: str, delay: float) -> None:
    from snapshots.run_journal import RunGuard

    original = RunGuard.__call__

    def guarded(self: RunGuard, name: str, details: Any) -> None:
        original(self, name, details)
        if name == step:
            _kill_after(delay)

    RunGuard.__call__ = guarded  # type: ignore[method-assign]


def _arm_call(target: str) -> None:
    module_name, _, attr_path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = attr_path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def killed(*args: Any, **kwargs: Any) -> Any:
        _kill_after(0)
        return original(*args, **kwargs)

    setattr(owner, name, killed)


def main() -> None:
    fault, command = sys.argv[1], sys.argv[2:]
    import django

    django.setup()
    kind, _, spec = fault.partition(":")
    if kind == "guard":
        step, _, delay = spec.partition("+")
        _arm_guard(step, float(delay or 0))
    elif kind == "call":
        _arm_call(spec)
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    from django.core.management import call_command

    call_command(*command)
    raise SystemExit(f"the fault {fault} never fired")


if __name__ == "__main__":
    main()
