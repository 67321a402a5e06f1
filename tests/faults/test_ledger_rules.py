"""The battery's judge, on hand-made ledgers: it must flag what it exists to flag."""

from __future__ import annotations

from pathlib import Path

from tests.faults.ledger import Attempt, LedgerWriter, attempts_from, judge_steps, read_ledger


def _attempt(att: str, pid: int, step: int = 1, wf: str = "wf") -> Attempt:
    return Attempt(wf, step, att, pid, 0.0)


def test_a_clean_run_has_no_findings() -> None:
    verdict = judge_steps([_attempt("a", 1)], {("wf", 1): "a"}, killed_pids=set())
    assert (verdict.steps, verdict.attempts, verdict.reruns) == (1, 1, 0)
    assert verdict.duplicates == [] and verdict.unexplained == []


def test_one_rerun_per_killed_process_is_allowed() -> None:
    ledger = [_attempt("a", 1), _attempt("b", 2), _attempt("c", 3)]
    verdict = judge_steps(ledger, {("wf", 1): "c"}, killed_pids={1, 2})
    assert verdict.reruns == 2
    assert verdict.duplicates == [] and verdict.unexplained == []


def test_an_attempt_after_the_recorded_one_is_a_duplicate() -> None:
    ledger = [_attempt("a", 1), _attempt("b", 2)]
    verdict = judge_steps(ledger, {("wf", 1): "a"}, killed_pids={1, 2})
    assert len(verdict.duplicates) == 1
    assert "attempt b (pid 2) began after the recorded attempt a" in verdict.duplicates[0]


def test_a_rerun_without_a_kill_is_unexplained() -> None:
    verdict = judge_steps([_attempt("a", 1), _attempt("b", 2)], {("wf", 1): "b"}, set())
    assert verdict.duplicates == []
    assert verdict.unexplained == [
        "wf step 1: attempt a in pid 1 was not recorded, yet that process was never killed"
    ]


def test_two_reruns_in_one_killed_process_are_unexplained() -> None:
    ledger = [_attempt("a", 1), _attempt("b", 1), _attempt("c", 2)]
    verdict = judge_steps(ledger, {("wf", 1): "c"}, killed_pids={1})
    assert verdict.unexplained == [
        "wf step 1: 2 unrecorded attempts in pid 1, one crash allows one"
    ]


def test_a_recorded_attempt_missing_from_the_ledger_is_unexplained() -> None:
    verdict = judge_steps([_attempt("a", 1)], {("wf", 1): "zz"}, killed_pids={1})
    assert len(verdict.unexplained) == 1 and "zz is not in the ledger" in verdict.unexplained[0]


def test_an_execution_of_a_judged_workflow_with_no_recorded_step_is_unexplained() -> None:
    ledger = [_attempt("a", 1, step=1), _attempt("b", 1, step=2)]
    verdict = judge_steps(ledger, {("wf", 1): "a"}, killed_pids=set())
    assert verdict.unexplained == ["wf step 2: ran 1 time(s) but no output is recorded"]


def test_steps_of_workflows_not_judged_are_ignored() -> None:
    ledger = [_attempt("a", 1), _attempt("x", 1, wf="other")]
    verdict = judge_steps(ledger, {("wf", 1): "a"}, killed_pids=set())
    assert verdict.unexplained == [] and verdict.attempts == 1


def test_the_writer_appends_whole_lines_that_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    first, second = LedgerWriter(path), LedgerWriter(path)  # two processes' writers
    first.append({"ev": "step", "wf": "w", "step": 1, "att": "a", "pid": 1, "t": 1.5})
    second.append({"ev": "started", "wf": "w"})
    first.append({"ev": "step", "wf": "w", "step": 2, "att": "b", "pid": 1, "t": 2.5})
    first.close()
    second.close()
    records = read_ledger(path)
    assert [r["ev"] for r in records] == ["step", "started", "step"]
    assert attempts_from(records) == [Attempt("w", 1, "a", 1, 1.5), Attempt("w", 2, "b", 1, 2.5)]
