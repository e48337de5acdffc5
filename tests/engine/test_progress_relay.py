"""ProgressRelay: reports from any thread reach the sinks on the relay's own
thread; a sink that raises is logged once and never reaches the reporter."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from engine.progress import Progress, ProgressRelay


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Progress] = []
        self.threads: set[str] = set()

    def __call__(self, progress: Progress) -> None:
        self.seen.append(progress)
        self.threads.add(threading.current_thread().name)


def test_reports_from_many_threads_reach_the_sink_on_the_relay_thread() -> None:
    sink = Recorder()
    with ProgressRelay([sink], interval=0.05, name="relay-under-test") as relay:

        def work(n: int) -> None:
            for i in range(2000):
                relay.report(Progress("archiving", i, 2000, f"t{n}"))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        relay.report(Progress("stored", 10, 10))
    assert sink.threads == {"relay-under-test"}
    # The last report always gets through, however fast the others came.
    assert sink.seen[-1] == Progress("stored", 10, 10)
    # Coalesced: far fewer publications than the 8,001 reports.
    assert len(sink.seen) < 200


def test_a_raising_sink_is_logged_once_and_the_others_still_get_reports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = Recorder()

    def bad(_: Progress) -> None:
        raise RuntimeError("result backend down")

    caplog.set_level(logging.WARNING, logger="engine.progress")
    with ProgressRelay([bad, good], interval=0.01) as relay:
        for i in range(20):
            relay.report(Progress(f"phase{i}"))  # each a phase change: published at once
            time.sleep(0.02)
    failures = [r for r in caplog.records if "progress reporting failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert "RuntimeError" in failures[0].getMessage()
    assert len(good.seen) >= 10 and good.seen[-1].phase == "phase19"


def test_report_never_raises_even_when_everything_behind_it_fails() -> None:
    relay = ProgressRelay([lambda _: 1 / 0], interval=0.01, ticks=[lambda: 1 / 0])
    with relay:
        for _ in range(1000):
            relay.report(Progress("x"))
    # After stop, reports are still accepted (and dropped): a late helper
    # thread finishing its last chunk must not crash.
    relay.report(Progress("late"))


def test_ticks_run_on_a_timer_without_any_report() -> None:
    beats: list[float] = []
    with ProgressRelay([], interval=0.02, ticks=[lambda: beats.append(time.monotonic())],
                       tick_seconds=0.05):  # fmt: skip
        time.sleep(0.5)
    assert 5 <= len(beats) <= 12, beats  # the first at once, then one every 0.05 s


def test_a_stuck_sink_does_not_hold_stop_for_ever() -> None:
    release = threading.Event()

    def stuck(_: Progress) -> None:
        release.wait(10)

    relay = ProgressRelay([stuck], interval=0.01).start()
    relay.report(Progress("x"))
    time.sleep(0.05)
    started = time.monotonic()
    relay.stop(timeout=0.3)
    assert time.monotonic() - started < 2
    release.set()


def test_on_exit_runs_on_the_relay_thread() -> None:
    where: list[str] = []
    with ProgressRelay([], on_exit=lambda: where.append(threading.current_thread().name),
                       name="relay-exit"):  # fmt: skip
        pass
    assert where == ["relay-exit"]


def test_a_phase_last_report_is_published_even_when_the_next_phase_follows_at_once() -> None:
    """A verify reports "verifying" at 64 MiB, then "verified" a few MiB later:
    both within one gap. The first must not be overwritten by the second."""
    sink = Recorder()
    with ProgressRelay([sink], interval=10.0) as relay:  # publishes at most every 1 s
        relay.report(Progress("verifying", 64, 67))
        relay.report(Progress("verified", 67, 67))
    assert sink.seen == [Progress("verifying", 64, 67), Progress("verified", 67, 67)]


def test_a_flurry_of_phases_keeps_only_the_latest_phase_ends() -> None:
    sink = Recorder()
    with ProgressRelay([sink], interval=10.0) as relay:
        for i in range(100):
            relay.report(Progress(f"phase{i}"))
    # Bounded: the last PHASE_ENDS_KEPT endings, then the latest report.
    assert [p.phase for p in sink.seen] == [f"phase{i}" for i in range(83, 100)]
