"""Claiming executor IDs and judging executors dead: the pure rules of engine.core.liveness."""

from __future__ import annotations

from engine.core.liveness import (
    ClaimVerdict,
    ExecutorRecord,
    LivenessObserver,
    ProcessIdentity,
    claim_verdict,
    missed_beat_seconds,
)

ME = ProcessIdentity(host="h", pid=100, process_key="boot/ns", process_start="555")
TIMEOUT = 30.0
NOW_MS = 1_000_000_000


def record(
    age_s: float = 1.0,
    pid: int = 200,
    key: str | None = "boot/ns",
    start: str | None = "777",
    executor_id: str = "x",
) -> ExecutorRecord:
    return ExecutorRecord(
        executor_id=executor_id,
        application_version="v",
        last_heartbeat_ms=NOW_MS - int(age_s * 1000),
        host="h",
        pid=pid,
        process_key=key,
        process_start=start,
        incarnation="i",
    )


def verdict(rec: ExecutorRecord | None, runs: bool | None = None) -> ClaimVerdict:
    return claim_verdict(rec, ME, NOW_MS, TIMEOUT, runs)


def test_an_id_nobody_holds_is_free() -> None:
    assert verdict(None) is ClaimVerdict.FREE


def test_our_own_process_may_claim_again() -> None:
    assert verdict(record(pid=100, start="555"), runs=True) is ClaimVerdict.OURS


def test_a_reused_pid_is_not_our_process() -> None:
    assert verdict(record(pid=100, start="1"), runs=False) is ClaimVerdict.HOLDER_EXITED


def test_same_machine_holder_that_exited_is_claimable_at_once_even_with_a_fresh_beat() -> None:
    assert verdict(record(age_s=0.1), runs=False) is ClaimVerdict.HOLDER_EXITED
    assert ClaimVerdict.HOLDER_EXITED.claimable


def test_same_machine_holder_still_running_is_refused_even_with_an_old_beat() -> None:
    got = verdict(record(age_s=TIMEOUT * 3), runs=True)
    assert got is ClaimVerdict.HOLDER_RUNS and not got.claimable


def test_holder_elsewhere_is_judged_by_its_heartbeat() -> None:
    assert verdict(record(age_s=TIMEOUT + 1, key="other-boot/ns")) is ClaimVerdict.SILENT
    unsure = verdict(record(age_s=2, key="other-boot/ns"))
    assert unsure is ClaimVerdict.UNSURE and not unsure.claimable


def test_rows_without_process_columns_are_judged_by_heartbeat() -> None:
    legacy = ExecutorRecord("local", None, NOW_MS - 5_000)
    assert verdict(legacy) is ClaimVerdict.UNSURE
    old = ExecutorRecord("local", None, NOW_MS - 60_000)
    assert verdict(old) is ClaimVerdict.SILENT


def test_missed_beat_allows_a_whole_interval_and_a_watch_pass() -> None:
    assert missed_beat_seconds(30, 1) == 1.5 * 5 + 1


class Watch:
    """An observer driven by a fake clock: ``t`` seconds of monotonic time since the start."""

    def __init__(self, confirm: float = 8.5, max_gap: float = 8.5) -> None:
        self.observer = LivenessObserver(TIMEOUT, confirm_sec=confirm, max_gap_sec=max_gap)

    def first_death(self, start: float, end: float, row: ExecutorRecord) -> float | None:
        """Passes every 5 s from ``start`` to ``end``; when ``row`` was first judged dead."""
        t = start
        while t <= end:
            if self.dead(t, row):
                return t
            t += 5
        return None

    def dead(
        self, t: float, *records: ExecutorRecord, exited: frozenset[str] = frozenset()
    ) -> list[str]:
        return self.observer.observe(list(records), t, NOW_MS + int(t * 1000), exited)


def beat_at(t: float, executor_id: str = "x") -> ExecutorRecord:
    """A row whose last heartbeat was written at fake time ``t``."""
    return ExecutorRecord(executor_id, "v", NOW_MS + int(t * 1000))


def test_a_silent_executor_dies_after_the_timeout_of_watching() -> None:
    w = Watch()
    row = beat_at(0)
    for t in range(0, 30, 5):
        assert w.dead(t, row) == []
    assert w.dead(30, row) == ["x"]


def test_a_beating_executor_never_dies() -> None:
    w = Watch()
    for t in range(0, 120, 5):
        assert w.dead(t, beat_at(t - 1)) == []


def test_an_executor_silent_long_before_we_looked_needs_only_the_confirm_window() -> None:
    w = Watch(confirm=8.5)
    ancient = beat_at(-600)
    assert w.dead(0, ancient) == []
    assert w.dead(5, ancient) == []
    assert w.dead(8.5, ancient) == ["x"]


def test_after_an_outage_nobody_is_condemned_for_silence_during_it() -> None:
    """Every heartbeat is 60 s old when the database returns; a live executor that is slow to
    reconnect (here: 20 s) must survive."""
    w = Watch()
    before = beat_at(0)
    assert w.dead(0, before) == []
    # Our next pass comes 60 s later (the outage): the old watch is forgotten.
    for t in range(60, 85, 5):
        assert w.dead(t, before) == [], "silent since the outage, but not watched long enough"
    assert w.dead(85, beat_at(81)) == []  # it beat again
    for t in range(90, 150, 5):
        assert w.dead(t, beat_at(t - 1)) == []


def test_an_executor_that_died_during_an_outage_is_judged_after_the_whole_timeout() -> None:
    w = Watch()
    assert w.dead(0, beat_at(0)) == []
    assert w.first_death(60, 200, beat_at(0)) == 60 + 30


def test_a_failed_pass_forgets_what_was_seen() -> None:
    w = Watch()
    row = beat_at(0)
    assert w.dead(0, row) == []
    assert w.dead(25, row) == []
    w.observer.forget_pass()
    assert w.dead(31, row) == [], "the 25 s watched before the failed pass no longer count"
    assert w.first_death(36, 200, row) == 31 + 30, "after a failed pass, no shortcut"


def test_an_exited_process_is_dead_at_once() -> None:
    w = Watch()
    assert w.dead(0, beat_at(0), exited=frozenset({"x"})) == ["x"]


def test_a_gap_between_passes_restarts_the_watch() -> None:
    w = Watch(max_gap=8.5)
    row = beat_at(0)
    assert w.dead(0, row) == []
    assert w.dead(20, row) == [], "we were not watching for 20 s (a stalled process)"
    assert w.dead(25, row) == []
    assert w.first_death(30, 200, row) == 50, "the whole timeout watched since the gap"


def test_rows_that_disappear_are_forgotten() -> None:
    w = Watch()
    assert w.dead(0, beat_at(0, "a"), beat_at(0, "b")) == []
    for t in range(5, 30, 5):
        assert w.dead(t, beat_at(0, "a")) == []
    assert w.dead(30, beat_at(0, "a"), beat_at(0, "b")) == ["a"], "b's watch began at 30"


def test_an_outage_noticed_before_the_first_watch_disables_the_shortcut() -> None:
    """Launched, then the database went down before our first look: every heartbeat is old
    when we first look, and live executors may be slow to reconnect."""
    w = Watch(confirm=8.5)
    row = beat_at(-60)
    for t in range(0, 30, 5):
        got = w.observer.observe([row], t, NOW_MS + t * 1000, outage_ended=-0.5)
        assert got == [], f"no shortcut at {t} s"
    assert w.observer.observe([row], 30, NOW_MS + 30_000, outage_ended=-0.5) == ["x"]


def test_an_outage_between_two_passes_on_time_restarts_the_watch() -> None:
    w = Watch()
    row = beat_at(0)
    assert w.observer.observe([row], 0, NOW_MS) == []
    assert w.observer.observe([row], 5, NOW_MS + 5_000) == []
    # A short outage ended at 7; the pass at 10 is on time but the watch starts over.
    assert w.observer.observe([row], 10, NOW_MS + 10_000, outage_ended=7) == []
    for t in range(15, 40, 5):
        assert w.observer.observe([row], t, NOW_MS + t * 1000, outage_ended=7) == []
    assert w.observer.observe([row], 40, NOW_MS + 40_000, outage_ended=7) == ["x"]
