"""The keeptime command line: exit codes, messages, and management commands on both backends."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import main
from daemon.cli_output import format_left
from daemon.cli_schedules import next_fire_times
from daemon.engine_setup import DEFAULT_APPLICATION_VERSION
from engine import DBOS, JsonSerializer, Queue, SetWorkflowID
from engine.core.cron import CronSchedule

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``keeptime ARGS`` in this process; returns (exit code, stdout, stderr)."""

    def _run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def write_config(folder: Path, body: str, name: str = "keeptime.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


# -- basics ----------------------------------------------------------------------------------------


def test_version(cli: Run) -> None:
    code, out, _ = cli("--version")
    assert code == 0
    assert out.startswith("keeptime ")


def test_no_command_is_a_usage_error(cli: Run) -> None:
    code, _, err = cli()
    assert code == 2
    assert "required: COMMAND" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["schedules", "next", "--cron", "* * * * *", "-n", "0"], "from 1 to 1000"),
        (["workflows", "list", "--limit", "x"], "expected a whole number"),
        (["workflows", "list", "--status", "DONE"], "invalid choice: 'DONE'"),
        (["debounce", "d", "k", "--input", "{bad"], "not valid JSON"),
        (["schedules", "backfill", "a", "--from", "yesterday", "--to", "x"], "not an ISO 8601"),
        (["run", "--log-format", "xml"], "invalid choice: 'xml'"),
        (["workflows", "get"], "the following arguments are required: ID"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(cli: Run, args: list[str], message: str) -> None:
    code, _, err = cli(*args)
    assert code == 2
    assert message in err


def test_check_valid_config(cli: Run) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "keeptime.example.toml"
    code, out, err = cli("check", "-c", str(example))
    assert (code, err) == (0, "")
    assert "ok (2 schedules, 1 debouncers, 1 queues)" in out


def test_check_invalid_config_prints_file_line_problems(cli: Run, tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [engine]
        name = "x"
        [schedules.a]
        cron = "61 * * * *"
        command = ["/bin/true"]
        colour = "red"
        """,
    )
    code, out, err = cli("check", "-c", str(path))
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}:4: schedules.a.cron: ")
    assert lines[1].startswith(f"{path}:6: schedules.a.colour: unknown key")
    assert lines[-1] == f"{path}: 2 problems"


def test_run_refuses_an_invalid_config(cli: Run, tmp_path: Path) -> None:
    path = write_config(tmp_path, "[engine]\nnmae = 1\n")
    code, _, err = cli("run", "-c", str(path))
    assert code == 1
    assert f"{path}:2: engine.nmae: unknown key" in err
    assert "refusing to start" in err


def test_config_path_comes_from_the_environment(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "[engine]\n")
    monkeypatch.setenv("KEEPTIME_CONFIG", str(path))
    code, out, _ = cli("check")
    assert code == 0
    assert str(path) in out


def test_missing_config_file_is_reported(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPTIME_CONFIG", str(tmp_path / "absent.toml"))
    code, _, err = cli("check")
    assert code == 1
    assert "absent.toml:1: cannot read the config file" in err


# -- schedules next --------------------------------------------------------------------------------


def test_next_marks_dst_transitions() -> None:
    from datetime import UTC, datetime

    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    start = datetime(2024, 3, 29, 12, tzinfo=UTC)
    records = next_fire_times(schedule, 3, start)
    assert [r["local"] for r in records] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",  # 02:30 does not exist that night: fires after the gap
        "2024-04-01T02:30:00+02:00",
    ]
    assert records[0]["note"] is None
    assert records[1]["note"] == "DST: clocks forward CET -> CEST (+1h)"
    assert records[2]["note"] is None
    autumn = next_fire_times(schedule, 2, datetime(2024, 10, 26, 12, tzinfo=UTC))
    assert autumn[1]["note"] == "DST: clocks back CEST -> CET (-1h)"


def test_next_with_cron_prints_a_table_and_json(cli: Run) -> None:
    code, out, _ = cli("schedules", "next", "--cron", "0 0 1 1 *", "--tz", "UTC", "-n", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "UTC", "LEFT", "NOTE"]
    assert len(lines) == 3
    code, out, _ = cli("schedules", "next", "--cron", "0 0 1 1 *", "-n", "2", "-o", "json")
    records = json.loads(out)
    assert [r["utc"][5:] for r in records] == ["01-01T00:00:00Z", "01-01T00:00:00Z"]


def test_next_of_a_configured_schedule_uses_its_zone(cli: Run, tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [schedules.nightly]
        cron = "0 2 * * *"
        timezone = "America/New_York"
        command = ["/bin/true"]
        """,
    )
    code, out, _ = cli("schedules", "next", "nightly", "-c", str(path), "-o", "json")
    assert code == 0
    assert all(r["local"][11:19] in ("02:00:00", "03:00:00") for r in json.loads(out))
    code, _, err = cli("schedules", "next", "nightl", "-c", str(path))
    assert code == 1
    assert "no schedule named 'nightl'" in err
    assert "did you mean 'nightly'?" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a schedule NAME or --cron EXPR"),
        (["x", "--cron", "* * * * *"], "give a schedule NAME or --cron EXPR"),
        (["--cron", "* * *"], "crontab"),
        (["--cron", "* * * * *", "--tz", "Mars/Base"], "Mars/Base"),
    ],
)
def test_next_bad_input_exits_1(cli: Run, args: list[str], message: str) -> None:
    code, _, err = cli("schedules", "next", *args)
    assert code == 1
    assert message in err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (65, "1min 5s"), (3 * 3600 + 720, "3h 12min"), (2 * 86400 + 3600, "2 days 1h")],
)
def test_format_left(seconds: int, text: str) -> None:
    from datetime import timedelta

    assert format_left(timedelta(seconds=seconds)) == text


# -- management on a database ----------------------------------------------------------------------


@DBOS.step()
def cli_test_step(x: int) -> int:
    return x * 2


@DBOS.workflow()
def cli_test_workflow(x: int) -> int:
    return cli_test_step(x) + 1


@pytest.fixture()
def db_config(db_url: str, tmp_path: Path) -> Iterator[Path]:
    """A config on this test's database, with one run of cli_test_workflow recorded in it."""
    path = write_config(
        tmp_path,
        f"""
        [engine]
        name = "cli-test"
        database_url = "{db_url}"
        [queues.work]
        concurrency = 2
        limiter = {{ limit = 5, period = "1m" }}
        [schedules.nightly]
        cron = "0 2 * * *"
        command = ["/bin/true"]
        """,
    )
    DBOS.destroy()
    DBOS(
        config={
            "name": "cli-test",
            "system_database_url": db_url,
            "serializer": JsonSerializer(),
            "application_version": DEFAULT_APPLICATION_VERSION,  # as a daemon on this config
        }
    )
    Queue("cli-test-unserved")
    DBOS.launch()
    with SetWorkflowID("wf-one"):
        assert cli_test_workflow(20) == 41
    DBOS.destroy()
    yield path


def test_workflows_list_get_steps(cli: Run, db_config: Path) -> None:
    c = str(db_config)
    code, out, _ = cli("workflows", "list", "-c", c)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "QUEUE", "CREATED", "UPDATED"]
    assert row.split()[:3] == ["wf-one", "cli_test_workflow", "SUCCESS"]
    code, out, _ = cli("workflows", "list", "-c", c, "--status", "ERROR", "-o", "json")
    assert json.loads(out) == []
    code, out, _ = cli("workflows", "get", "wf-one", "-c", c, "-o", "json")
    record = json.loads(out)
    assert (record["status"], record["output"], record["input"]["args"]) == ("SUCCESS", 41, [20])
    code, out, _ = cli("workflows", "steps", "wf-one", "-c", c, "-o", "json")
    assert [(s["function_name"], s["output"]) for s in json.loads(out)] == [("cli_test_step", 40)]
    code, out, _ = cli("workflows", "steps", "wf-one", "-c", c)
    assert out.splitlines()[1].split() == ["1", "cli_test_step", "40", "-"]


def test_workflows_get_unknown_id_exits_1(cli: Run, db_config: Path) -> None:
    code, _, err = cli("workflows", "get", "nope", "-c", str(db_config))
    assert code == 1
    assert "no workflow with ID 'nope'" in err


def test_workflows_fork_and_cancel(cli: Run, db_config: Path) -> None:
    c = str(db_config)
    code, out, _ = cli("workflows", "fork", "wf-one", "--step", "1", "-c", c, "-o", "json")
    assert code == 0
    forked = json.loads(out)["workflow_id"]
    assert forked != "wf-one"
    code, out, _ = cli("workflows", "cancel", forked, "-c", c, "-o", "json")
    assert code == 0
    code, out, _ = cli("workflows", "get", forked, "-c", c, "-o", "json")
    assert json.loads(out)["status"] == "CANCELLED"
    code, out, _ = cli("workflows", "resume", forked, "-c", c, "-o", "json")
    assert code == 0
    assert json.loads(out) == {"workflow_id": forked, "action": "resumed"}


def test_queues_list(cli: Run, db_config: Path) -> None:
    code, out, _ = cli("queues", "list", "-c", str(db_config), "-o", "json")
    assert code == 0
    assert json.loads(out) == [
        {
            "name": "work",
            "concurrency": 2,
            "worker_concurrency": None,
            "limiter": "5/60s",
            "enqueued": 0,
            "running": 0,
        }
    ]


def test_db_migrate(cli: Run, db_url: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, f'[engine]\ndatabase_url = "{db_url}"\n')
    code, out, _ = cli("db", "migrate", "-c", str(path))
    assert code == 0
    assert "migrated the database from schema version 0 to" in out
    code, out, _ = cli("db", "migrate", "-c", str(path))
    assert "up to date" in out


def test_cli_output_json_handles_engine_values() -> None:
    from daemon.cli_output import jsonable

    value: Any = jsonable({"e": ValueError("x"), "t": (1, 2)})
    assert value == {"e": {"type": "ValueError", "message": "x"}, "t": [1, 2]}


@pytest.fixture()
def registered_schedules(db_url: str, tmp_path: Path) -> Iterator[Path]:
    """A config whose schedules a daemon has registered in the database (then stopped)."""
    from daemon.config import load_config
    from daemon.engine_setup import dbos_config, register_schedule_targets
    from daemon.registry_sync import RegistrySync

    path = write_config(
        tmp_path,
        f"""
        [engine]
        name = "cli-sched"
        database_url = "{db_url}"
        [schedules.nightly]
        cron = "0 2 * * *"
        timezone = "Europe/Berlin"
        command = ["/bin/true"]
        [schedules.hourly]
        cron = "0 * * * *"
        command = ["/bin/true"]
        paused = true
        """,
    )
    config = load_config(path)
    DBOS.destroy()
    DBOS(config=dbos_config(config))
    workflows = register_schedule_targets(config.schedules)
    DBOS.launch()
    RegistrySync().apply(config, workflows, {})
    DBOS.destroy()
    yield path


def test_schedules_list_pause_resume(cli: Run, registered_schedules: Path) -> None:
    c = str(registered_schedules)
    code, out, _ = cli("schedules", "list", "-c", c)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "CRON", "TZ", "NEXT", "LEFT", "LAST", "RESULT", "PAUSED"]
    code, out, _ = cli("schedules", "list", "-c", c, "-o", "json")
    by_name = {r["name"]: r for r in json.loads(out)}
    assert by_name["hourly"]["paused"] is True
    assert by_name["hourly"]["next"] is None
    assert by_name["nightly"]["timezone"] == "Europe/Berlin"
    assert by_name["nightly"]["next"] is not None
    assert cli("schedules", "pause", "nightly", "-c", c)[0] == 0
    code, out, _ = cli("schedules", "list", "-c", c, "-o", "json")
    assert {r["name"]: r["paused"] for r in json.loads(out)}["nightly"] is True
    assert cli("schedules", "resume", "nightly", "-c", c)[0] == 0
    code, out, _ = cli("schedules", "list", "-c", c, "-o", "json")
    assert {r["name"]: r["paused"] for r in json.loads(out)}["nightly"] is False


def test_schedules_trigger_and_backfill_enqueue_runs(cli: Run, registered_schedules: Path) -> None:
    c = str(registered_schedules)
    code, out, _ = cli("schedules", "trigger", "nightly", "-c", c, "-o", "json")
    assert code == 0
    triggered = json.loads(out)[0]["workflow_id"]
    assert triggered.startswith("sched-nightly-trigger-")
    code, out, _ = cli(
        "schedules", "backfill", "nightly", "--from", "2024-03-30T00:00:00Z",
        "--to", "2024-04-01T00:00:00Z", "-c", c, "-o", "json",
    )  # fmt: skip
    assert code == 0
    assert [r["workflow_id"] for r in json.loads(out)] == [
        "sched-nightly-2024-03-30T01:00:00Z",
        "sched-nightly-2024-03-31T01:00:00Z",  # 02:00 Berlin does not exist: 03:00 CEST
        "sched-nightly-2024-04-01T00:00:00Z",  # --to is inclusive
    ]
    code, out, _ = cli("workflows", "get", triggered, "-c", c, "-o", "json")
    assert json.loads(out)["status"] == "ENQUEUED"


def test_schedules_control_of_unknown_name_exits_1(cli: Run, registered_schedules: Path) -> None:
    code, _, err = cli("schedules", "pause", "nigthly", "-c", str(registered_schedules))
    assert code == 1
    assert "no schedule named 'nigthly'" in err
    assert "did you mean 'nightly'?" in err
    code, _, err = cli(
        "schedules", "backfill", "nightly", "--from", "2024-02-01", "--to", "2024-01-01",
        "-c", str(registered_schedules),
    )  # fmt: skip
    assert code == 1
    assert "must be before --to" in err


def test_debounce_from_the_cli_stores_a_window(cli: Run, db_url: str, tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f"""
        [engine]
        database_url = "{db_url}"
        [debouncers.reindex]
        command = ["/bin/true"]
        period = "60s"
        """,
    )
    code, out, _ = cli("debounce", "reindex", "u1", "--input", '{"a": 1}', "-c", str(path))
    assert code == 0
    first = out.split()[-1]
    code, out, _ = cli(
        "debounce", "reindex", "u1", "--input", '{"a": 2}', "-c", str(path), "-o", "json"
    )
    assert json.loads(out)["workflow_id"] == first
    code, _, err = cli("debounce", "reindx", "u1", "-c", str(path))
    assert code == 1
    assert "did you mean 'reindex'?" in err
