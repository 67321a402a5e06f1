"""The TOML config: every validation rule has a bad-input test checking message and line."""

from __future__ import annotations

import os
import pickle
import re
import stat
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.config import (
    CATCHUP_POLICIES,
    OVERLAP_POLICIES,
    CommandTarget,
    Config,
    ConfigInvalid,
    ConfigProblem,
    HttpTarget,
    Limiter,
    RetryPolicy,
    WorkflowTarget,
    database_url_with_password,
    load_config,
    parse_config,
    read_database_password,
    read_token,
)
from daemon.config_locate import TomlLocator, format_key_path
from engine.core.cron import CronSchedule
from engine.error import (
    DBOSConfigError,
    DBOSInvalidCrontabError,
    DBOSUnknownTimezoneError,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"
SCHEDULE_A = '[schedules.a]\ncron = "* * * * *"\n'

WriteConfig = Callable[..., Path]


@pytest.fixture()
def write(tmp_path: Path) -> WriteConfig:
    """Write a (dedented) config file into tmp_path and return its path."""

    def _write(text: str, name: str = "keeptime.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


@pytest.fixture()
def module_factory(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Write a throwaway Python module into tmp_path; returns its (unique) name."""
    names: list[str] = []
    saved_path = list(sys.path)

    def _make(source: str) -> str:
        name = f"kt_jobs_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        names.append(name)
        return name

    yield _make
    sys.path[:] = saved_path
    for name in names:
        sys.modules.pop(name, None)


def problems_of(path: Path, **kwargs: bool) -> list[ConfigProblem]:
    with pytest.raises(ConfigInvalid) as info:
        load_config(path, **kwargs)
    return info.value.problems


def only_problem(path: Path, **kwargs: bool) -> ConfigProblem:
    problems = problems_of(path, **kwargs)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def cron_error(expr: str) -> str:
    with pytest.raises(DBOSInvalidCrontabError) as info:
        CronSchedule.parse(expr, "UTC")
    return str(info.value)


def zone_error(zone: str) -> str:
    with pytest.raises(DBOSUnknownTimezoneError) as info:
        CronSchedule.parse("* * * * *", zone)
    return str(info.value)


# -- a valid file ----------------------------------------------------------------------------------


def test_empty_file_gives_all_defaults(write: WriteConfig, tmp_path: Path) -> None:
    cfg = load_config(write(""))
    assert cfg.source_path == tmp_path / "keeptime.toml"
    assert cfg.config_dir == tmp_path
    assert cfg.engine.name == "keeptime"
    assert cfg.engine.database_url == f"sqlite:///{tmp_path}/keeptime.sqlite"
    assert cfg.python.paths == (tmp_path,)
    assert cfg.python.modules == ()
    assert (cfg.http.host, cfg.http.port, cfg.http.token_file) == ("127.0.0.1", 8787, None)
    assert cfg.http.max_body_bytes == 1024 * 1024
    assert (cfg.log.format, cfg.log.level) == ("json", "info")
    assert (cfg.queues, cfg.schedules, cfg.debouncers) == ({}, {}, {})


def test_full_file(
    write: WriteConfig, tmp_path: Path, module_factory: Callable[[str], str]
) -> None:
    mod = module_factory(
        """
        def nightly_report(scheduled_time, actual_time):
            return None

        def reindex_user(user_input):
            return None
        """
    )
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "work").mkdir()
    path = write(
        f"""
        [engine]
        name = "kt-test"
        database_url = "postgresql://kt@db.internal:5432/keeptime"
        application_version = "v1"
        executor_id = "host-a"
        max_recovery_attempts = 5

        [python]
        paths = ["."]
        modules = ["{mod}"]

        [http]
        listen = "[::]:9000"
        token_file = "token"
        max_body_bytes = 2048

        [log]
        format = "console"
        level = "WARN"

        [queues.reports]
        concurrency = 5
        worker_concurrency = 1
        limiter = {{ limit = 10, period = "1m" }}
        priority_enabled = true
        partition_queue = true

        [schedules.nightly-report]
        cron = "0 2 * * *"
        timezone = "Europe/Berlin"
        workflow = "{mod}:nightly_report"
        queue = "reports"
        timeout = "30m"
        catchup = "all"
        catchup_window = "6h"
        max_catchup = 10
        overlap = "buffer_one"
        jitter = "30s"
        paused = true
        retries = {{ max_attempts = 5, interval = "10s", backoff = 1.5 }}

        [schedules.backup]
        cron = "30 3 * * *"
        command.argv = ["{sys.executable}", "-V"]
        command.cwd = "work"
        command.env = {{ LANG = "C" }}
        command.timeout = "1h"

        [schedules.hook]
        cron = "*/5 * * * *"

        [schedules.hook.http]
        url = "https://example.com/hook"
        method = "put"
        headers = {{ "X-A" = "b" }}
        body = {{ ok = true, n = [1, 2] }}
        timeout = "5s"

        [debouncers.reindex]
        workflow = "{mod}:reindex_user"
        period = "60s"
        max_wait = "10m"
        queue = "reports"
        """
    )
    cfg = load_config(path)
    assert cfg.engine.name == "kt-test"
    assert cfg.engine.database_url == "postgresql+psycopg://kt@db.internal:5432/keeptime"
    assert cfg.engine.is_postgres and not cfg.engine.is_sqlite
    assert (cfg.engine.application_version, cfg.engine.executor_id) == ("v1", "host-a")
    assert cfg.engine.max_recovery_attempts == 5
    assert cfg.python.modules == (mod,)
    assert (cfg.http.host, cfg.http.port, cfg.http.is_loopback) == ("::", 9000, False)
    assert cfg.http.token_file == tmp_path / "token"
    assert read_token(cfg) == "s3cret"
    assert (cfg.log.format, cfg.log.level) == ("console", "warning")

    queue = cfg.queues["reports"]
    assert queue.limiter == Limiter(limit=10, period=timedelta(minutes=1))
    assert queue.queue_kwargs() == {
        "concurrency": 5,
        "worker_concurrency": 1,
        "limiter": {"limit": 10, "period": 60.0},
        "priority_enabled": True,
        "partition_queue": True,
    }

    nightly = cfg.schedules["nightly-report"]
    assert nightly.target == WorkflowTarget(module=mod, function="nightly_report")
    assert (nightly.cron, nightly.timezone, nightly.queue) == (
        "0 2 * * *",
        "Europe/Berlin",
        "reports",
    )
    assert nightly.timeout == timedelta(minutes=30)
    assert (nightly.catchup, nightly.catchup_window, nightly.max_catchup) == (
        "all",
        timedelta(hours=6),
        10,
    )
    assert (nightly.overlap, nightly.jitter, nightly.paused) == (
        "buffer_one",
        timedelta(seconds=30),
        True,
    )
    assert nightly.retries == RetryPolicy(5, timedelta(seconds=10), 1.5)

    backup = cfg.schedules["backup"].target
    assert backup == CommandTarget(
        argv=(sys.executable, "-V"),
        cwd=tmp_path / "work",
        env={"LANG": "C"},
        timeout=timedelta(hours=1),
    )
    hook = cfg.schedules["hook"].target
    assert hook == HttpTarget(
        url="https://example.com/hook",
        method="PUT",
        headers={"X-A": "b"},
        body={"ok": True, "n": [1, 2]},
        timeout=timedelta(seconds=5),
    )
    reindex = cfg.debouncers["reindex"]
    assert reindex.target == WorkflowTarget(mod, "reindex_user")
    assert (reindex.period, reindex.max_wait, reindex.queue) == (
        timedelta(seconds=60),
        timedelta(minutes=10),
        "reports",
    )


def test_schedule_defaults(write: WriteConfig) -> None:
    cfg = load_config(
        write(
            """
            [schedules.a]
            cron = "* * * * *"
            command = ["true"]

            [schedules.b]
            cron = "* * * * *"
            command = ["true"]
            catchup = "all"
            """
        )
    )
    a = cfg.schedules["a"]
    assert a.target == CommandTarget(argv=("true",))
    assert (a.timezone, a.catchup, a.overlap, a.jitter, a.paused) == (
        "UTC",
        "latest",
        "skip",
        timedelta(0),
        False,
    )
    assert (a.catchup_window, a.max_catchup, a.retries, a.queue, a.timeout) == (
        None,
        None,
        None,
        None,
        None,
    )
    b = cfg.schedules["b"]
    assert (b.catchup_window, b.max_catchup) == (timedelta(days=1), 10)


def test_loading_twice_gives_equal_configs(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\n')
    assert load_config(path) == load_config(path)


# -- problem format --------------------------------------------------------------------------------


def test_problem_format_and_exception_type(write: WriteConfig) -> None:
    path = write(
        """
        [log]
        level = "loud"
        """
    )
    with pytest.raises(DBOSConfigError) as info:
        load_config(path)
    err = info.value
    assert isinstance(err, ConfigInvalid)
    assert str(err) == (
        f"{path}:2: log.level: unknown log level 'loud' "
        "(use one of: debug, info, warning, error, critical)"
    )
    problem = err.problems[0]
    assert (problem.file, problem.line, problem.key_path) == (str(path), 2, "log.level")


def test_problem_without_hint_or_key_path() -> None:
    assert str(ConfigProblem("f.toml", 3, "a.b", "bad")) == "f.toml:3: a.b: bad"
    assert str(ConfigProblem("f.toml", 3, "", "bad", "fix")) == "f.toml:3: bad (fix)"


def test_all_problems_are_collected_in_one_pass_sorted_by_line(write: WriteConfig) -> None:
    path = write(
        """
        [engine]
        nme = "x"

        [schedules.a]
        cron = 5
        command = ["true"]
        overlap = "never"

        [log]
        format = "xml"
        """
    )
    problems = problems_of(path)
    assert [(p.line, p.key_path) for p in problems] == [
        (2, "engine.nme"),
        (5, "schedules.a.cron"),
        (7, "schedules.a.overlap"),
        (10, "log.format"),
    ]
    text = str(ConfigInvalid(problems))
    assert len(text.splitlines()) == 4
    assert all(line.startswith(f"{path}:") for line in text.splitlines())


def test_config_invalid_pickles_with_its_problems(write: WriteConfig) -> None:
    problems = problems_of(write("[log]\nformat = 1\n"))
    copy = pickle.loads(pickle.dumps(ConfigInvalid(problems)))
    assert isinstance(copy, ConfigInvalid)
    assert copy.problems == problems
    assert str(copy) == str(ConfigInvalid(problems))


def test_file_label_is_the_path_as_given(write: WriteConfig, tmp_path: Path) -> None:
    write("[log]\nformat = 1\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        problem = only_problem(Path("keeptime.toml"))
    finally:
        os.chdir(cwd)
    assert str(problem).startswith("keeptime.toml:2: log.format: ")


def test_missing_file(tmp_path: Path) -> None:
    problem = only_problem(tmp_path / "nope.toml")
    assert problem.line == 1
    assert problem.problem == "cannot read the config file: No such file or directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_bytes(b'[log]\nlevel = "info"\n# caf\xe9\n')
    problem = only_problem(path)
    assert (problem.line, problem.problem) == (3, "the file is not valid UTF-8")


def test_parse_config_from_text(tmp_path: Path) -> None:
    cfg = parse_config('[engine]\nname = "x"\n', tmp_path / "virtual.toml")
    assert cfg.engine.database_url == f"sqlite:///{tmp_path}/x.sqlite"
    with pytest.raises(ConfigInvalid, match=r"^virtual.toml:2: engine.name: "):
        parse_config("[engine]\nname = 5\n", tmp_path / "x.toml", file_label="virtual.toml")


def test_config_problem_helper_locates_keys(write: WriteConfig) -> None:
    cfg = load_config(write('# c\n[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\n'))
    problem = cfg.problem(("schedules", "a", "command"), "refused by the engine", "fix it")
    assert problem.line == 4
    assert str(problem) == (
        f"{cfg.source_path}:4: schedules.a.command: refused by the engine (fix it)"
    )


# -- TOML syntax -----------------------------------------------------------------------------------


def test_syntax_error_has_the_line_from_tomllib(write: WriteConfig) -> None:
    path = write(
        """
        [engine]
        name = "keeptime"
        database_url = sqlite:///x
        """
    )
    problem = only_problem(path)
    assert problem.line == 3
    assert problem.key_path == ""
    assert problem.problem == "TOML syntax error: Invalid value"
    assert str(problem).startswith(f"{path}:3: TOML syntax error: Invalid value (")


def test_syntax_error_duplicate_table_names_the_key_path(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncron = "* * * * *"\n\n[schedules.a]\n')
    problem = only_problem(path)
    assert problem.line == 4
    assert problem.problem == "TOML syntax error: Cannot declare 'schedules.a' twice"


def test_syntax_error_at_end_of_file(write: WriteConfig) -> None:
    path = write('[python]\nmodules = ["a",\n\n')
    problem = only_problem(path)
    assert problem.line == 2
    assert problem.problem.endswith("at the end of the file")


# -- unknown keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key_path", "hint"),
    [
        ('title = "x"\n', 1, "title", "valid keys: engine, python, http, log, queues, "),
        ('[engin]\nname = "x"\n', 1, "engin", "did you mean 'engine'?"),
        ('[engine]\nnmae = "x"\n', 2, "engine.nmae", "did you mean 'name'?"),
        ('[http]\nlisten = "127.0.0.1:1"\ntoken = "x"\n', 3, "http.token", "did you mean"),
        ('[log]\n\nformt = "json"\n', 3, "log.formt", "did you mean 'format'?"),
        ('[python]\npath = ["."]\n', 2, "python.path", "did you mean 'paths'?"),
        ("[queues.q]\nconcurency = 1\n", 2, "queues.q.concurency", "did you mean 'concurrency'?"),
        (
            '[queues.q]\nlimiter = { limit = 1, perod = "1s" }\n',
            2,
            "queues.q.limiter.perod",
            "did you mean 'period'?",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\ncatch_up = "all"\n',
            4,
            "schedules.a.catch_up",
            "did you mean 'catchup'?",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\n'
            "retries = { max_attempt = 3 }\n",
            4,
            "schedules.a.retries.max_attempt",
            "did you mean 'max_attempts'?",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = { argv = ["true"], workdir = "/" }\n',
            3,
            "schedules.a.command.workdir",
            "valid keys: argv, cwd, env, timeout",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\nhttp = { url = "http://x", header = {} }\n',
            3,
            "schedules.a.http.header",
            "did you mean 'headers'?",
        ),
        (
            '[debouncers.d]\nworkflow = "m:f"\nperiod = "1s"\nmax_wiat = "2s"\n',
            4,
            "debouncers.d.max_wiat",
            "did you mean 'max_wait'?",
        ),
    ],
)
def test_unknown_keys_at_every_level(
    write: WriteConfig, text: str, line: int, key_path: str, hint: str
) -> None:
    problem = only_problem(write(text), import_targets=False)
    assert (problem.line, problem.key_path) == (line, key_path)
    assert problem.problem == f"unknown key {key_path.rsplit('.', 1)[-1]!r}"
    assert problem.hint.startswith(hint)


def test_unknown_key_in_a_dotted_key_line(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\nretries.tries = 3\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (4, "schedules.a.retries.tries")


# -- types -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key_path", "problem", "hint"),
    [
        (
            '[schedules.a]\ncommand = ["true"]\ncron = 5\n',
            3,
            "schedules.a.cron",
            "must be a string, not an integer (5)",
            'e.g. cron = "0 2 * * *"',
        ),
        (
            '[engine]\nname = ["a"]\n',
            2,
            "engine.name",
            'must be a string, not an array (["a"])',
            "write it in quotes",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\npaused = "yes"\n',
            4,
            "schedules.a.paused",
            'must be a boolean (true or false), not a string ("yes")',
            "e.g. paused = true",
        ),
        (
            "[queues.q]\nconcurrency = true\n",
            2,
            "queues.q.concurrency",
            "must be an integer, not a boolean (true)",
            "",
        ),
        (
            "[queues.q]\nconcurrency = 1.5\n",
            2,
            "queues.q.concurrency",
            "must be an integer, not a float (1.5)",
            "",
        ),
        ("engine = 5\n", 1, "engine", "must be a table, not an integer (5)", ""),
        (
            "[schedules]\na = 1\n",
            2,
            "schedules.a",
            "must be a table, not an integer (1)",
            "write it as a [schedules.a] table",
        ),
        (
            '[python]\nmodules = "jobs"\n',
            2,
            "python.modules",
            'must be an array of strings, not a string ("jobs")',
            'e.g. modules = ["..."]',
        ),
        (
            '[python]\nmodules = [\n  "jobs",\n  7,\n]\n',
            4,
            "python.modules[1]",
            "must be a string, not an integer (7)",
            "every element of the array is a string in quotes",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\njitter = true\n',
            4,
            "schedules.a.jitter",
            "must be a duration, not a boolean (true)",
            'e.g. jitter = "30s"',
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\nretries = { backoff = "2" }\n',
            4,
            "schedules.a.retries.backoff",
            'must be a number, not a string ("2")',
            "",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\nretries = 3\n',
            4,
            "schedules.a.retries",
            "must be a table, not an integer (3)",
            "",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\nworkflow = 3\n',
            3,
            "schedules.a.workflow",
            "must be a string, not an integer (3)",
            'e.g. workflow = "jobs:nightly_report"',
        ),
        (
            '[http]\nmax_body_bytes = "1MB"\n',
            2,
            "http.max_body_bytes",
            'must be an integer, not a string ("1MB")',
            "",
        ),
    ],
)
def test_wrong_types(
    write: WriteConfig, text: str, line: int, key_path: str, problem: str, hint: str
) -> None:
    found = only_problem(write(text), import_targets=False)
    assert (found.line, found.key_path, found.problem) == (line, key_path, problem)
    assert found.hint.startswith(hint)


# -- durations and ranges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key_path", "problem", "hint"),
    [
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\ntimeout = "10 minutes"\n',
            4,
            "schedules.a.timeout",
            "invalid duration '10 minutes'",
            "use a number with a unit: 500ms, 30s, 10m, 2h, 1d, or combinations like 1h30m",
        ),
        (
            '[debouncers.d]\ncommand = ["true"]\nperiod = "30"\n',
            3,
            "debouncers.d.period",
            "invalid duration '30': the unit is missing",
            "add a unit, e.g. '30s' for seconds or '30m' for minutes",
        ),
        (
            '[debouncers.d]\ncommand = ["true"]\nperiod = 0\n',
            3,
            "debouncers.d.period",
            "duration 0 must be positive",
            "use e.g. 30s",
        ),
        (
            '[debouncers.d]\ncommand = ["true"]\nperiod = "-1s"\n',
            3,
            "debouncers.d.period",
            "invalid duration '-1s'",
            "use a number with a unit",
        ),
        (
            '[queues.q]\nlimiter = { limit = 5, period = "0s" }\n',
            2,
            "queues.q.limiter.period",
            "duration '0s' must be positive",
            "use e.g. 30s",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\njitter = "-1s"\n',
            4,
            "schedules.a.jitter",
            "invalid duration '-1s'",
            "use a number with a unit",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = { argv = ["true"], timeout = "1x" }\n',
            3,
            "schedules.a.command.timeout",
            "invalid duration '1x'",
            "use a number with a unit",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\nhttp = { url = "http://x", timeout = 0 }\n',
            3,
            "schedules.a.http.timeout",
            "duration 0 must be positive",
            "use e.g. 30s",
        ),
        (
            "[queues.q]\nconcurrency = 0\n",
            2,
            "queues.q.concurrency",
            "must be positive, not 0",
            "use a value of at least 1",
        ),
        (
            "[queues.q]\nworker_concurrency = -2\n",
            2,
            "queues.q.worker_concurrency",
            "must be positive, not -2",
            "use a value of at least 1",
        ),
        (
            '[queues.q]\nlimiter = { limit = 0, period = "1s" }\n',
            2,
            "queues.q.limiter.limit",
            "must be positive, not 0",
            "use a value of at least 1",
        ),
        (
            "[queues.q]\nlimiter = { limit = 3 }\n",
            2,
            "queues.q.limiter.period",
            "the required key 'period' is missing",
            "",
        ),
        (
            "[queues.q]\nconcurrency = 2\nworker_concurrency = 3\n",
            3,
            "queues.q.worker_concurrency",
            "worker_concurrency (3) is larger than concurrency (2)",
            "a process can never run more than the global limit",
        ),
        (
            "[http]\nmax_body_bytes = 0\n",
            2,
            "http.max_body_bytes",
            "must be positive, not 0",
            "use a value between 1 and 1073741824",
        ),
        (
            "[engine]\nmax_recovery_attempts = 0\n",
            2,
            "engine.max_recovery_attempts",
            "must be positive, not 0",
            "use a value of at least 1",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\n'
            "retries = { max_attempts = 0 }\n",
            4,
            "schedules.a.retries.max_attempts",
            "must be positive, not 0",
            "use a value between 1 and 1000",
        ),
        (
            '[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\nretries = { backoff = 0.5 }\n',
            4,
            "schedules.a.retries.backoff",
            "must be >= 1.0, not 0.5",
            "use a value between 1.0 and 100.0",
        ),
        (
            '[debouncers.d]\ncommand = ["true"]\nperiod = "1m"\nmax_wait = "30s"\n',
            4,
            "debouncers.d.max_wait",
            "max_wait is shorter than period, so no input would ever be debounced",
            "make max_wait at least as long as period",
        ),
        (
            '[debouncers.d]\ncommand = ["true"]\n',
            1,
            "debouncers.d.period",
            "the required key 'period' is missing",
            'add e.g. period = "60s"',
        ),
    ],
)
def test_durations_and_ranges(
    write: WriteConfig, text: str, line: int, key_path: str, problem: str, hint: str
) -> None:
    found = only_problem(write(text), import_targets=False)
    assert (found.line, found.key_path, found.problem) == (line, key_path, problem)
    assert found.hint.startswith(hint)


def test_plain_numbers_are_seconds(write: WriteConfig) -> None:
    cfg = load_config(write('[debouncers.d]\ncommand = ["true"]\nperiod = 90\nmax_wait = 1.5e3\n'))
    assert cfg.debouncers["d"].period == timedelta(seconds=90)
    assert cfg.debouncers["d"].max_wait == timedelta(seconds=1500)


# -- cron, time zones, policies --------------------------------------------------------------------


def test_invalid_cron(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncommand = ["true"]\n\ncron = "61 * * * *"\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (4, "schedules.a.cron")
    # The engine's message, with its trailing "(...)" turned into the hint.
    assert f"{problem.problem} ({problem.hint})" == cron_error("61 * * * *")
    assert problem.problem.startswith("invalid crontab '61 * * * *': minute field '61'")


def test_invalid_cron_without_engine_hint_gets_an_example(write: WriteConfig) -> None:
    problem = only_problem(write(f'{SCHEDULE_A.replace("* * * * *", "* * *")}command = ["true"]\n'))
    assert (problem.line, problem.key_path) == (2, "schedules.a.cron")
    assert problem.problem == cron_error("* * *")
    assert problem.hint == "e.g. '0 2 * * *' runs at 02:00 every day"


def test_cron_macros_and_seconds_are_accepted(write: WriteConfig) -> None:
    cfg = load_config(
        write(
            '[schedules.a]\ncron = "@daily"\ncommand = ["true"]\n'
            '[schedules.b]\ncron = "*/10 * * * * *"\ncommand = ["true"]\n'
        )
    )
    assert (cfg.schedules["a"].cron, cfg.schedules["b"].cron) == ("@daily", "*/10 * * * * *")


def test_unknown_timezone(write: WriteConfig) -> None:
    path = write(
        '[schedules.a]\ncron = "0 2 * * *"\ntimezone = "Mars/Olympus"\ncommand = ["true"]\n'
    )
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (3, "schedules.a.timezone")
    assert f"{problem.problem} ({problem.hint})" == zone_error("Mars/Olympus")
    assert problem.problem == "unknown timezone 'Mars/Olympus'"
    assert "IANA" in problem.hint


def test_timezone_typo_suggests_the_zone(write: WriteConfig) -> None:
    path = write(f'{SCHEDULE_A}timezone = "Europe/Berln"\ncommand = ["true"]\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (3, "schedules.a.timezone")
    assert "did you mean 'Europe/Berlin'?" in problem.hint


def test_invalid_cron_and_timezone_are_both_reported(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncron = "0 25 * * *"\ntimezone = "Nowhere/X"\ncommand = ["true"]\n')
    problems = problems_of(path)
    assert [(p.line, p.key_path, f"{p.problem} ({p.hint})") for p in problems] == [
        (2, "schedules.a.cron", cron_error("0 25 * * *")),
        (3, "schedules.a.timezone", zone_error("Nowhere/X")),
    ]


def test_timezone_checked_even_when_cron_has_the_wrong_type(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncron = 1\ntimezone = "Nowhere/X"\ncommand = ["true"]\n')
    assert [(p.line, p.key_path) for p in problems_of(path)] == [
        (2, "schedules.a.cron"),
        (3, "schedules.a.timezone"),
    ]


def test_missing_cron(write: WriteConfig) -> None:
    problem = only_problem(write('# c\n[schedules.a]\ncommand = ["true"]\n'))
    assert (problem.line, problem.key_path) == (2, "schedules.a.cron")
    assert problem.problem == "the required key 'cron' is missing"
    assert problem.hint == 'add e.g. cron = "0 2 * * *"'


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [
        ("catchup", "sometimes", "use one of: none, latest, all"),
        ("catchup", "lates", "did you mean 'latest'?"),
        ("overlap", "queue", "use one of: skip, buffer_one, buffer_all, cancel_other, allow"),
        ("overlap", "buffer-one", "did you mean 'buffer_one'?"),
    ],
)
def test_policy_names(write: WriteConfig, key: str, value: str, hint: str) -> None:
    path = write(f'[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\n{key} = "{value}"\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (4, f"schedules.a.{key}")
    assert (problem.problem, problem.hint) == (f"unknown value {value!r}", hint)


def test_every_policy_name_is_accepted(write: WriteConfig) -> None:
    blocks = [
        f'[schedules.s{i}-{j}]\ncron = "* * * * *"\ncommand = ["true"]\n'
        f'catchup = "{c}"\noverlap = "{o}"\n'
        for i, c in enumerate(CATCHUP_POLICIES)
        for j, o in enumerate(OVERLAP_POLICIES)
    ]
    cfg = load_config(write("\n".join(blocks)))
    assert {(s.catchup, s.overlap) for s in cfg.schedules.values()} == {
        (c, o) for c in CATCHUP_POLICIES for o in OVERLAP_POLICIES
    }


@pytest.mark.parametrize("key", ["catchup_window", "max_catchup"])
def test_catchup_bounds_only_with_all(write: WriteConfig, key: str) -> None:
    value = '"6h"' if key == "catchup_window" else "5"
    path = write(f'{SCHEDULE_A}command = ["true"]\ncatchup = "none"\n{key} = {value}\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (5, f"schedules.a.{key}")
    assert problem.problem == f'{key} only applies with catchup = "all" (here catchup = "none")'
    assert problem.hint == 'remove it, or set catchup = "all"'


def test_catchup_bounds_default_policy_is_latest(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncron = "* * * * *"\ncommand = ["true"]\nmax_catchup = 5\n')
    assert '(here catchup = "latest")' in only_problem(path).problem


@pytest.mark.parametrize(
    ("value", "problem"), [(0, "must be positive, not 0"), (1001, "must be at most 1000, not 1001")]
)
def test_max_catchup_range(write: WriteConfig, value: int, problem: str) -> None:
    path = write(f'{SCHEDULE_A}command = ["true"]\ncatchup = "all"\nmax_catchup = {value}\n')
    found = only_problem(path)
    assert (found.line, found.key_path, found.problem) == (5, "schedules.a.max_catchup", problem)
    assert found.hint == "use a value between 1 and 1000"


# -- names and references --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key_path"),
    [
        ('[schedules."nightly report"]', 'schedules."nightly report"'),
        ('[schedules."-x"]', "schedules.-x"),
        ('[debouncers."a/b"]', 'debouncers."a/b"'),
        ('[queues."_internal"]', "queues._internal"),
        (f"[queues.{'q' * 101}]", f"queues.{'q' * 101}"),
    ],
)
def test_invalid_names(write: WriteConfig, header: str, key_path: str) -> None:
    problem = only_problem(write(f'# c\n{header}\ncron = "* * * * *"\n'), import_targets=False)
    assert (problem.line, problem.key_path) == (2, key_path)
    assert problem.problem.startswith("invalid name ")
    assert "letters, digits, '.', '_' and '-'" in problem.hint


def test_names_with_dots_are_quoted_in_key_paths(write: WriteConfig) -> None:
    path = write('[schedules."db.backup"]\ncron = "* * * * *"\ncommand = ["true"]\npaused = 1\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (4, 'schedules."db.backup".paused')


def test_unknown_queue(write: WriteConfig) -> None:
    path = write(
        """
        [queues.reports]

        [schedules.a]
        cron = "* * * * *"
        command = ["true"]
        queue = "reprots"

        [debouncers.d]
        command = ["true"]
        period = "1s"
        queue = "other"
        """
    )
    problems = problems_of(path)
    assert [(p.line, p.key_path, p.problem, p.hint) for p in problems] == [
        (6, "schedules.a.queue", "unknown queue 'reprots'", "did you mean 'reports'?"),
        (11, "debouncers.d.queue", "unknown queue 'other'", "defined queues: reports"),
    ]


def test_unknown_queue_without_any_queue(write: WriteConfig) -> None:
    path = write('[debouncers.d]\ncommand = ["true"]\nperiod = "1s"\nqueue = "q"\n')
    problem = only_problem(path)
    assert (problem.line, problem.hint) == (4, "define it in a [queues.q] table")


# -- targets ---------------------------------------------------------------------------------------


def test_no_target(write: WriteConfig) -> None:
    problem = only_problem(write('# c\n[schedules.a]\ncron = "* * * * *"\n'))
    assert (problem.line, problem.key_path) == (2, "schedules.a")
    assert problem.problem == "no target: nothing to run"
    assert problem.hint.startswith('set exactly one of workflow = "module:function"')


def test_two_targets(write: WriteConfig) -> None:
    path = write('[debouncers.d]\nperiod = "1s"\nworkflow = "m:f"\nhttp = { url = "http://x" }\n')
    problem = only_problem(path, import_targets=False)
    assert (problem.line, problem.key_path) == (4, "debouncers.d.http")
    assert problem.problem == "workflow and http are both set; a target is exactly one of them"


def test_three_targets(write: WriteConfig) -> None:
    path = write(
        '[debouncers.d]\nperiod = "1s"\nworkflow = "m:f"\ncommand = ["true"]\n'
        'http = { url = "http://x" }\n'
    )
    problem = only_problem(path, import_targets=False)
    assert (problem.line, problem.key_path) == (4, "debouncers.d.command")
    assert problem.problem.startswith("workflow and command and http are all set")


@pytest.mark.parametrize(
    "spec", ["jobs", "jobs.nightly", "jobs:", ":f", "jobs:f()", "1jobs:f", "a:b:c"]
)
def test_workflow_reference_form(write: WriteConfig, spec: str) -> None:
    path = write(f'[schedules.a]\ncron = "* * * * *"\nworkflow = "{spec}"\n')
    problem = only_problem(path, import_targets=False)
    assert (problem.line, problem.key_path) == (3, "schedules.a.workflow")
    assert problem.problem == f"invalid workflow reference {spec!r}"
    assert problem.hint == "write module:function, e.g. 'jobs:nightly_report'"


def test_workflow_not_imported_without_import_targets(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncron = "* * * * *"\nworkflow = "no_such_mod_kt:f"\n')
    cfg = load_config(path, import_targets=False)
    assert cfg.schedules["a"].target == WorkflowTarget("no_such_mod_kt", "f")


def test_workflow_module_import_error(write: WriteConfig) -> None:
    path = write('[schedules.a]\ncron = "* * * * *"\n\nworkflow = "no_such_mod_kt:f"\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (4, "schedules.a.workflow")
    assert problem.problem == (
        "cannot import module 'no_such_mod_kt': "
        "ModuleNotFoundError: No module named 'no_such_mod_kt'"
    )
    assert problem.hint.startswith("python.paths lists the folders to import from: ")


def test_workflow_module_raising_on_import(
    write: WriteConfig, module_factory: Callable[[str], str]
) -> None:
    mod = module_factory("raise RuntimeError('needs a database')\n")
    path = write(f'[schedules.a]\ncron = "* * * * *"\nworkflow = "{mod}:f"\n')
    problem = only_problem(path)
    assert problem.line == 3
    assert problem.problem == f"cannot import module {mod!r}: RuntimeError: needs a database"


def test_workflow_function_missing_suggests_the_closest(
    write: WriteConfig, module_factory: Callable[[str], str]
) -> None:
    mod = module_factory("def nightly_report(a, b):\n    pass\n")
    path = write(f'[schedules.a]\ncron = "* * * * *"\nworkflow = "{mod}:nightly_reprot"\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (3, "schedules.a.workflow")
    assert problem.problem == f"'{mod}:nightly_reprot': {mod!r} has no attribute 'nightly_reprot'"
    assert problem.hint == "did you mean 'nightly_report'?"


def test_workflow_not_callable(write: WriteConfig, module_factory: Callable[[str], str]) -> None:
    mod = module_factory("NIGHTLY = 5\n")
    path = write(f'[debouncers.d]\nperiod = "1s"\nworkflow = "{mod}:NIGHTLY"\n')
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (3, "debouncers.d.workflow")
    assert problem.problem == f"'{mod}:NIGHTLY' is not callable (it is int)"


def test_workflow_attribute_path(write: WriteConfig, module_factory: Callable[[str], str]) -> None:
    mod = module_factory(
        """
        class Jobs:
            @staticmethod
            def run(scheduled_time, actual_time):
                pass
        """
    )
    path = write(f'[schedules.a]\ncron = "* * * * *"\nworkflow = "{mod}:Jobs.run"\n')
    assert load_config(path).schedules["a"].target == WorkflowTarget(mod, "Jobs.run")


def test_scheduled_workflow_signature(
    write: WriteConfig, module_factory: Callable[[str], str]
) -> None:
    mod = module_factory("def only_one(x):\n    pass\n")
    path = write(f'[schedules.a]\ncron = "* * * * *"\nworkflow = "{mod}:only_one"\n')
    problem = only_problem(path)
    assert problem.line == 3
    assert problem.problem.startswith(f"'{mod}:only_one' cannot be called as a scheduled workflow")
    assert problem.hint == (
        "a scheduled workflow takes two datetimes: def f(scheduled_time, actual_time)"
    )


def test_debounced_workflow_signature(
    write: WriteConfig, module_factory: Callable[[str], str]
) -> None:
    mod = module_factory("def two(a, b):\n    pass\n\ndef flexible(*args, **kwargs):\n    pass\n")
    path = write(
        f'[debouncers.d]\nperiod = "1s"\nworkflow = "{mod}:two"\n\n'
        f'[debouncers.e]\nperiod = "1s"\nworkflow = "{mod}:flexible"\n'
    )
    problem = only_problem(path)
    assert (problem.line, problem.key_path) == (3, "debouncers.d.workflow")
    assert problem.hint == "a debounced workflow takes the last input: def f(user_input)"


def test_python_modules_are_imported_and_errors_located(
    write: WriteConfig, module_factory: Callable[[str], str]
) -> None:
    good = module_factory("VALUE = 1\n")
    path = write(
        f"""
        [python]
        paths = ["."]
        modules = [
          "{good}",
          "no_such_mod_kt2",
          "bad-name",
        ]
        """
    )
    problems = problems_of(path)
    assert [(p.line, p.key_path) for p in problems] == [
        (5, "python.modules[1]"),
        (6, "python.modules[2]"),
    ]
    assert problems[0].problem.startswith("cannot import module 'no_such_mod_kt2'")
    assert problems[1].problem == "invalid module name 'bad-name'"
    assert good in sys.modules


def test_python_paths_are_relative_to_the_config_folder(write: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    sub = tmp_path / "lib"
    name = f"kt_sub_{uuid.uuid4().hex[:8]}"
    (sub / f"{name}.py").write_text("def f(a, b):\n    pass\n")
    saved = list(sys.path)
    try:
        cfg = load_config(write(f'[python]\npaths = ["lib"]\n{SCHEDULE_A}workflow = "{name}:f"\n'))
        assert cfg.python.paths == (sub,)
        assert str(sub) in sys.path
    finally:
        sys.path[:] = saved
        sys.modules.pop(name, None)


def test_python_path_missing(write: WriteConfig) -> None:
    problem = only_problem(write('[python]\npaths = [".", "nope"]\n'))
    assert (problem.line, problem.key_path) == (2, "python.paths[1]")
    assert problem.problem.endswith("nope' does not exist")


@pytest.mark.parametrize(
    ("command", "key_path", "problem", "hint"),
    [
        ("[]", "schedules.a.command", "the command is empty", "the first element is the program"),
        ('[""]', "schedules.a.command", "the command is empty", "the first element is the program"),
        (
            '["true", 5]',
            "schedules.a.command[1]",
            "must be a string, not an integer (5)",
            "every element",
        ),
        (
            '["./backup.sh"]',
            "schedules.a.command[0]",
            "relative program path './backup.sh'",
            "use an absolute path, or a program name found on PATH",
        ),
        (
            '["no-such-program-kt"]',
            "schedules.a.command[0]",
            "program 'no-such-program-kt' not found on PATH",
            "use an absolute path, install the program, or set PATH in command.env",
        ),
        (
            '["/no/such/program"]',
            "schedules.a.command[0]",
            "program '/no/such/program' does not exist",
            "check the path",
        ),
        (
            '"/bin/true"',
            "schedules.a.command",
            'must be an array of strings or a table, not a string ("/bin/true")',
            'e.g. command = ["/usr/local/bin/backup", "--fast"]',
        ),
        (
            '{ cwd = "/" }',
            "schedules.a.command.argv",
            "the required key 'argv' is missing",
            'add e.g. argv = ["/usr/local/bin/backup", "--fast"]',
        ),
        (
            '{ argv = ["true"], env = { A = 1 } }',
            "schedules.a.command.env.A",
            "must be a string, not an integer (1)",
            'write it in quotes: A = "1"',
        ),
        (
            '{ argv = ["true"], env = { "1X" = "y" } }',
            "schedules.a.command.env.1X",
            "invalid environment variable name '1X'",
            "use letters, digits and '_'",
        ),
        (
            '{ argv = ["true"], cwd = "missing-dir" }',
            "schedules.a.command.cwd",
            "folder",
            "create it",
        ),
    ],
)
def test_command_targets(
    write: WriteConfig, command: str, key_path: str, problem: str, hint: str
) -> None:
    found = only_problem(write(f'[schedules.a]\ncron = "* * * * *"\ncommand = {command}\n'))
    assert (found.line, found.key_path) == (3, key_path)
    assert found.problem.startswith(problem)
    assert found.hint.startswith(hint)


def test_command_not_executable(write: WriteConfig, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    if os.access(script, os.X_OK):  # root may execute anything with an x bit; 644 has none
        pytest.skip("cannot make a non-executable file here")
    found = only_problem(write(f'[schedules.a]\ncron = "* * * * *"\ncommand = ["{script}"]\n'))
    assert (found.line, found.problem) == (3, f"program '{script}' is not executable")
    assert found.hint == f"chmod +x {script}"


def test_command_uses_path_from_env(write: WriteConfig, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "kt-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    path = write(
        f'[schedules.a]\ncron = "* * * * *"\n'
        f'command = {{ argv = ["kt-tool"], env = {{ PATH = "{bindir}" }} }}\n'
    )
    assert load_config(path).schedules["a"].target == CommandTarget(
        argv=("kt-tool",), env={"PATH": str(bindir)}
    )


def test_command_files_not_checked_without_check_files(write: WriteConfig) -> None:
    path = write(
        '[schedules.a]\ncron = "* * * * *"\ncommand = { argv = ["/no/such"], cwd = "/no/dir" }\n'
    )
    cfg = load_config(path, check_files=False)
    assert cfg.schedules["a"].target == CommandTarget(argv=("/no/such",), cwd=Path("/no/dir"))


@pytest.mark.parametrize(
    ("http", "key_path", "problem", "hint"),
    [
        (
            '"https://x"',
            "schedules.a.http",
            'must be a table, not a string ("https://x")',
            'e.g. http = { url = "https://example.com/hook", method = "POST" }',
        ),
        (
            '{ url = "ftp://example.com/x" }',
            "schedules.a.http.url",
            "invalid webhook URL 'ftp://example.com/x'",
            "use an absolute http:// or https:// URL",
        ),
        (
            '{ url = "/relative" }',
            "schedules.a.http.url",
            "invalid webhook URL '/relative'",
            "use an absolute",
        ),
        (
            '{ method = "POST" }',
            "schedules.a.http.url",
            "the required key 'url' is missing",
            'add e.g. url = "https://example.com/hook"',
        ),
        (
            '{ url = "http://x", method = "FETCH" }',
            "schedules.a.http.method",
            "unsupported method 'FETCH'",
            "use one of: GET, POST, PUT, PATCH, DELETE",
        ),
        (
            '{ url = "http://x", method = "GET", body = { a = 1 } }',
            "schedules.a.http.body",
            "a GET request has no body",
            "use POST, or remove body",
        ),
        (
            '{ url = "http://x", body = { at = [1979-05-27T07:32:00Z] } }',
            "schedules.a.http.body.at[0]",
            "JSON has no dates or times: 1979-05-27 07:32:00+00:00",
            'write it as a string: "1979-05-27T07:32:00+00:00"',
        ),
        (
            '{ url = "http://x", headers = { "X-N" = 1 } }',
            "schedules.a.http.headers.X-N",
            "must be a string, not an integer (1)",
            "write it in quotes",
        ),
    ],
)
def test_http_targets(
    write: WriteConfig, http: str, key_path: str, problem: str, hint: str
) -> None:
    found = only_problem(write(f'[schedules.a]\ncron = "* * * * *"\nhttp = {http}\n'))
    assert (found.line, found.key_path, found.problem) == (3, key_path, problem)
    assert found.hint.startswith(hint)


def test_http_target_as_a_subtable(write: WriteConfig) -> None:
    path = write(
        """
        [schedules.a]
        cron = "* * * * *"

        [schedules.a.http]
        url = "http://127.0.0.1/x"
        method = "PATCH"
        timout = "5s"
        """
    )
    found = only_problem(path)
    assert (found.line, found.key_path, found.hint) == (
        7,
        "schedules.a.http.timout",
        "did you mean 'timeout'?",
    )


# -- [http] listen and token -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "host", "port", "loopback"),
    [
        ("127.0.0.1:8787", "127.0.0.1", 8787, True),
        ("localhost:1", "localhost", 1, True),
        ("[::1]:8787", "::1", 8787, True),
        ("127.9.9.9:0", "127.9.9.9", 0, True),
    ],
)
def test_listen_loopback(
    write: WriteConfig, listen: str, host: str, port: int, loopback: bool
) -> None:
    cfg = load_config(write(f'[http]\nlisten = "{listen}"\n'))
    assert (cfg.http.listen, cfg.http.host, cfg.http.port, cfg.http.is_loopback) == (
        listen,
        host,
        port,
        loopback,
    )


@pytest.mark.parametrize(
    ("listen", "problem", "hint"),
    [
        ("8787", "invalid address '8787'", "write HOST:PORT"),
        (":8787", "invalid address ':8787'", "write HOST:PORT"),
        ("::1:8787", "invalid address '::1:8787'", "put IPv6 addresses in brackets"),
        ("[::1]8787", "invalid address '[::1]8787'", "write HOST:PORT"),
        ("127.0.0.1:http", "invalid port 'http'", "use a port between 1 and 65535"),
        ("127.0.0.1:70000", "invalid port '70000'", "use a port between 1 and 65535"),
    ],
)
def test_listen_invalid(write: WriteConfig, listen: str, problem: str, hint: str) -> None:
    found = only_problem(write(f'[http]\n\nlisten = "{listen}"\n'))
    assert (found.line, found.key_path, found.problem) == (3, "http.listen", problem)
    assert found.hint.startswith(hint)


@pytest.mark.parametrize("listen", ["0.0.0.0:8787", "[::]:8787", "192.168.1.5:80", "myhost:80"])
def test_non_loopback_needs_a_token_file(write: WriteConfig, listen: str) -> None:
    found = only_problem(write(f'[http]\nlisten = "{listen}"\n'))
    assert (found.line, found.key_path) == (2, "http.listen")
    assert found.problem.endswith("(not loopback) needs a bearer token")
    assert found.hint.startswith("set http.token_file, e.g. to a systemd credential")


def test_token_file_checks(write: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "dir").mkdir()
    for name, problem in [
        ("missing", f"the token file '{tmp_path}/missing' does not exist"),
        ("empty", f"the token file '{tmp_path}/empty' is empty"),
        ("dir", f"the token file '{tmp_path}/dir' is not a regular file"),
    ]:
        path = write(f'[http]\nlisten = "0.0.0.0:1"\ntoken_file = "{name}"\n')
        found = only_problem(path)
        assert (found.line, found.key_path, found.problem) == (3, "http.token_file", problem)
    cfg = load_config(path, check_files=False)
    assert cfg.http.token_file == tmp_path / "dir"


def test_read_token_errors_at_run_time(write: WriteConfig, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc")
    cfg = load_config(write('[http]\n\ntoken_file = "token"\n'))
    assert read_token(cfg) == "abc"
    token.write_text("  \n")
    with pytest.raises(ConfigInvalid) as info:
        read_token(cfg)
    assert str(info.value) == (
        f"{cfg.source_path}:3: http.token_file: the token file '{token}' is empty"
    )
    token.unlink()
    with pytest.raises(ConfigInvalid, match="cannot read the token file"):
        read_token(cfg)


def test_read_token_without_token_file(write: WriteConfig) -> None:
    assert read_token(load_config(write(""))) is None


# -- [engine] database -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///state.sqlite", "sqlite:///{dir}/state.sqlite"),
        ("sqlite:///./data/../state.sqlite?timeout=5", "sqlite:///{dir}/state.sqlite?timeout=5"),
        ("sqlite:////tmp/abs.sqlite", "sqlite:////tmp/abs.sqlite"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        (
            "postgresql+psycopg://u:pw@h/db?sslmode=require",
            "postgresql+psycopg://u:pw@h/db?sslmode=require",
        ),
    ],
)
def test_database_url_is_resolved(
    write: WriteConfig, tmp_path: Path, url: str, expected: str
) -> None:
    cfg = load_config(write(f'[engine]\ndatabase_url = "{url}"\n'))
    assert cfg.engine.database_url == expected.format(dir=tmp_path)


@pytest.mark.parametrize(
    ("url", "problem", "hint"),
    [
        ("keeptime.sqlite", "not a database URL: 'keeptime.sqlite'", "use sqlite:///"),
        ("mysql://u@h/db", "unsupported database 'mysql'", "use sqlite:///"),
        (
            "postgresql+asyncpg://u@h/db",
            "unsupported PostgreSQL driver 'asyncpg'",
            "use postgresql://",
        ),
        ("postgresql://u@h", "the URL names no database", "add it: postgresql://host/dbname"),
        ("postgresql://u@h:nan/db", "invalid PostgreSQL URL 'postgresql://u@h:nan/db'", "use"),
        ("postgresql://u@h:99999/db", "invalid port 99999 in the URL", "use a port between"),
        ("sqlite://", "'sqlite://' is not a SQLite database file", "use sqlite:///relative"),
        ("sqlite:///:memory:", "'sqlite:///:memory:' is not a SQLite database file", "use sqlite"),
        (
            "sqlite:///no/such/dir/x.sqlite",
            "the folder of the SQLite file does not exist: {dir}/no/such/dir",
            "create it (under systemd, StateDirectory= does that)",
        ),
    ],
)
def test_database_url_invalid(
    write: WriteConfig, tmp_path: Path, url: str, problem: str, hint: str
) -> None:
    found = only_problem(write(f'[engine]\nname = "k"\ndatabase_url = "{url}"\n'))
    assert (found.line, found.key_path) == (3, "engine.database_url")
    assert found.problem == problem.format(dir=tmp_path)
    assert found.hint.startswith(hint)


def test_database_password_file(write: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("p@ss/word\n")
    cfg = load_config(
        write('[engine]\ndatabase_url = "postgresql://kt@db/kt"\ndatabase_password_file = "pw"\n')
    )
    assert cfg.engine.database_password_file == tmp_path / "pw"
    assert "p@ss" not in cfg.engine.database_url
    assert read_database_password(cfg) == "p@ss/word"
    assert database_url_with_password(cfg) == "postgresql+psycopg://kt:p%40ss%2Fword@db/kt"


def test_database_url_with_password_without_password_file(write: WriteConfig) -> None:
    cfg = load_config(write(""))
    assert database_url_with_password(cfg) == cfg.engine.database_url
    assert read_database_password(cfg) is None


def test_password_file_with_a_malformed_url_reports_only_the_url(write: WriteConfig) -> None:
    path = write(
        '[engine]\ndatabase_url = "postgresql://u@[::1/db"\ndatabase_password_file = "x"\n'
    )
    problems = problems_of(path, check_files=False)
    assert [(p.line, p.key_path) for p in problems] == [(2, "engine.database_url")]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite:///x.sqlite", "only PostgreSQL URLs use a password"),
        ("postgresql://u:pw@h/db", "database_url already contains a password"),
        ("postgresql://u@h/db", "the password file '{dir}/missing' does not exist"),
    ],
)
def test_database_password_file_invalid(
    write: WriteConfig, tmp_path: Path, url: str, problem: str
) -> None:
    path = write(f'[engine]\ndatabase_url = "{url}"\n\ndatabase_password_file = "missing"\n')
    found = only_problem(path)
    assert (found.line, found.key_path) == (4, "engine.database_password_file")
    assert found.problem == problem.format(dir=tmp_path)


def test_engine_strings(write: WriteConfig) -> None:
    problems = problems_of(write('[engine]\nname = "bad name"\nexecutor_id = ""\n'))
    assert [(p.line, p.key_path, p.problem) for p in problems] == [
        (2, "engine.name", "invalid name 'bad name'"),
        (3, "engine.executor_id", "must not be empty"),
    ]


def test_log_level_aliases_and_case(write: WriteConfig) -> None:
    assert load_config(write('[log]\nlevel = "DEBUG"\n')).log.level == "debug"
    assert load_config(write('[log]\nlevel = "warn"\n')).log.level == "warning"


# -- the locator -----------------------------------------------------------------------------------


LOCATOR_SOURCE = """\
# comment with [brackets] and key = "value"
title = "x"   # trailing
[engine]
text = \"\"\"
[not.a.table]
name = "inside a string"
\"\"\"
lit = '''
x = 1'''
[schedules."my job"]
cron = "0 2 * * *"
command = [
  "/bin/echo",  # a comment in an array
  "a]b",
]
http = { url = "http://x", headers = { "X-A" = "b" }, timeout = "30s" }
retries.max_attempts = 3
when = 1979-05-27 07:32:00Z
[ schedules . 'other' ]
empty = {}
[[items]]
name = "first"
[items.sub]
deep = 1
[[items]]
name = "second"
"""


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("title",), 2),
        (("engine",), 3),
        (("engine", "text"), 4),
        (("engine", "lit"), 8),
        (("schedules",), 10),
        (("schedules", "my job"), 10),
        (("schedules", "my job", "cron"), 11),
        (("schedules", "my job", "command"), 12),
        (("schedules", "my job", "command", 0), 13),
        (("schedules", "my job", "command", 1), 14),
        (("schedules", "my job", "http"), 16),
        (("schedules", "my job", "http", "headers", "X-A"), 16),
        (("schedules", "my job", "http", "timeout"), 16),
        (("schedules", "my job", "retries"), 17),
        (("schedules", "my job", "retries", "max_attempts"), 17),
        (("schedules", "my job", "when"), 18),
        (("schedules", "other"), 19),
        (("schedules", "other", "empty"), 20),
        (("items",), 21),
        (("items", 0, "name"), 22),
        (("items", 0, "sub", "deep"), 24),
        (("items", 1), 25),
        (("items", 1, "name"), 26),
    ],
)
def test_locator_finds_keys(path: tuple[str | int, ...], line: int) -> None:
    locator = TomlLocator(LOCATOR_SOURCE)
    assert locator.exact_line(path) == line
    assert locator.line_of(path) == line


def test_locator_ignores_keys_inside_strings() -> None:
    locator = TomlLocator(LOCATOR_SOURCE)
    assert locator.exact_line(("not",)) is None
    assert locator.exact_line(("engine", "name")) is None
    assert locator.exact_line(("engine", "x")) is None


def test_locator_falls_back_to_the_enclosing_table_then_line_1() -> None:
    locator = TomlLocator(LOCATOR_SOURCE)
    assert locator.line_of(("schedules", "my job", "missing", "deeper")) == 10
    assert locator.line_of(("schedules", "my job", "http", "method")) == 16
    assert locator.line_of(("nothing",)) == 1
    assert locator.line_of(()) == 1


def test_locator_survives_invalid_toml() -> None:
    locator = TomlLocator("[a]\nb = 1\nc = = 2\n[d]\n")
    assert locator.exact_line(("a", "b")) == 2
    assert locator.line_of(("d",)) == 1
    assert TomlLocator('x = "unterminated\n').line_of(("x",)) == 1


def test_locator_windows_line_endings() -> None:
    locator = TomlLocator('[a]\r\nb = 1\r\n\r\nc = "x"\r\n')
    assert (locator.exact_line(("a", "b")), locator.exact_line(("a", "c"))) == (2, 4)


def test_format_key_path() -> None:
    assert format_key_path(("schedules", "my job", "command", 1)) == 'schedules."my job".command[1]'
    assert format_key_path(("a.b", "c-d", "e_f")) == '"a.b".c-d.e_f'
    assert format_key_path(()) == ""


# -- the examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["keeptime.example.toml", "nightly-report.toml", "debounce-input.toml"]
)
def test_example_configs_validate(name: str) -> None:
    cfg = load_config(CONFIG_DIR / name, import_targets=False)
    assert cfg.engine.is_sqlite
    assert cfg.engine.database_url.startswith(f"sqlite:///{CONFIG_DIR}/")
    assert cfg.python.paths == (CONFIG_DIR,)
    assert cfg.python.modules == ("jobs",)
    assert cfg.schedules or cfg.debouncers


def test_main_example_content() -> None:
    cfg = load_config(CONFIG_DIR / "keeptime.example.toml", import_targets=False)
    assert cfg.schedules["heartbeat"].cron == "* * * * *"
    assert cfg.schedules["heartbeat"].target == WorkflowTarget("jobs", "heartbeat")
    assert cfg.schedules["nightly-report"].target == WorkflowTarget("jobs", "nightly_report")
    assert cfg.debouncers["reindex"].target == WorkflowTarget("jobs", "reindex_user")
    assert cfg.http.is_loopback and cfg.http.token_file is None


def test_commented_out_examples_in_the_main_example_validate(tmp_path: Path) -> None:
    """The "uncomment to use" blocks must stay valid too."""
    text = (CONFIG_DIR / "keeptime.example.toml").read_text()
    blocks = re.findall(r"^# (\[schedules\.\w+\]\n(?:# \S.*\n)+)", text, flags=re.M)
    assert len(blocks) == 2
    body = "\n".join(re.sub(r"^# ", "", block, flags=re.M) for block in blocks)
    cfg = parse_config(body, tmp_path / "x.toml", check_files=False)
    assert isinstance(cfg.schedules["backup"].target, CommandTarget)
    assert isinstance(cfg.schedules["ping"].target, HttpTarget)


def test_example_workflows_import(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Imports config/jobs.py for real: this needs `from engine import DBOS` to work."""
    monkeypatch.setenv("KEEPTIME_REPORT_DIR", str(tmp_path))
    saved = list(sys.path)
    try:
        cfg = load_config(CONFIG_DIR / "keeptime.example.toml")
        assert isinstance(cfg, Config)
        jobs = sys.modules["jobs"]
        assert callable(jobs.nightly_report) and callable(jobs.reindex_user)
    finally:
        sys.path[:] = saved


def test_docs_mention_every_key() -> None:
    from daemon import config as config_module

    docs = (REPO / "docs" / "configuration.md").read_text()
    groups = [
        config_module._ENGINE_KEYS,
        config_module._QUEUE_KEYS,
        config_module._SCHEDULE_KEYS,
        config_module._DEBOUNCER_KEYS,
        ("paths", "modules", "listen", "token_file", "max_body_bytes", "format", "level"),
        ("argv", "cwd", "env", "url", "method", "headers", "body", "limit", "period"),
        ("max_attempts", "interval", "backoff"),
    ]
    missing = [key for group in groups for key in group if f"`{key}`" not in docs]
    assert missing == []
