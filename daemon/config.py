"""Load and validate the daemon's TOML config file.

:func:`load_config` reads the file, checks everything it can (types, unknown keys, durations,
cron expressions, time zones, references between sections, files, commands, and with
``import_targets`` the Python workflows themselves), and either returns a frozen :class:`Config`
or raises :class:`ConfigInvalid` listing *every* problem as ``FILE:LINE: key.path: problem (hint)``.

The model lives in :mod:`daemon.config_model` and is re-exported here.
"""

from __future__ import annotations

import ast
import os
import re
import tomllib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from daemon.config_check import (
    ConfigContext,
    Table,
    check_readable_secret,
    database_url_with_password,
    read_database_password,
    read_token,
    resolve_path,
    split_hint,
    suggest,
)
from daemon.config_locate import KeyPath, TomlLocator, format_key_path
from daemon.config_model import (
    CATCHUP_POLICIES,
    LOG_FORMATS,
    LOG_LEVELS,
    NAME_PATTERN,
    OVERLAP_POLICIES,
    CatchupPolicy,
    CommandTarget,
    Config,
    ConfigInvalid,
    ConfigProblem,
    DebouncerConfig,
    EngineSection,
    HttpMethod,
    HttpSection,
    HttpTarget,
    Limiter,
    LogFormat,
    LogLevel,
    LogSection,
    OverlapPolicy,
    PythonSection,
    QueueConfig,
    RetryPolicy,
    ScheduleConfig,
    Target,
    WorkflowTarget,
    is_loopback_host,
)
from daemon.config_targets import TargetChecks, parse_target
from engine import CronSchedule
from engine.error import DBOSInvalidCrontabError, DBOSUnknownTimezoneError

__all__ = [
    "CATCHUP_POLICIES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OVERLAP_POLICIES",
    "CommandTarget",
    "Config",
    "ConfigInvalid",
    "ConfigProblem",
    "DebouncerConfig",
    "EngineSection",
    "HttpMethod",
    "HttpSection",
    "HttpTarget",
    "Limiter",
    "LogSection",
    "PythonSection",
    "QueueConfig",
    "RetryPolicy",
    "ScheduleConfig",
    "Target",
    "WorkflowTarget",
    "database_url_with_password",
    "load_config",
    "parse_config",
    "read_database_password",
    "read_token",
]

_TOP_LEVEL = ("engine", "python", "http", "log", "queues", "schedules", "debouncers")
_ENGINE_KEYS = (
    "name",
    "database_url",
    "application_version",
    "executor_id",
    "database_password_file",
    "max_recovery_attempts",
)
_QUEUE_KEYS = (
    "concurrency",
    "worker_concurrency",
    "limiter",
    "priority_enabled",
    "partition_queue",
)
_TARGET_KEYS = ("workflow", "command", "http")
_SCHEDULE_KEYS = (
    "cron",
    "timezone",
    *_TARGET_KEYS,
    "queue",
    "timeout",
    "catchup",
    "catchup_window",
    "max_catchup",
    "overlap",
    "jitter",
    "paused",
    "retries",
)
_DEBOUNCER_KEYS = (*_TARGET_KEYS, "period", "max_wait", "queue")
_NAME_HINT = (
    "names use letters, digits, '.', '_' and '-', start with a letter or digit, "
    "and have at most 100 characters"
)
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
DEFAULT_CATCHUP_WINDOW = timedelta(days=1)
DEFAULT_MAX_CATCHUP = 10


def load_config(
    path: str | os.PathLike[str],
    *,
    import_targets: bool = True,
    check_files: bool = True,
) -> Config:
    """Read and validate the config file at ``path``.

    With ``import_targets``, ``python.paths`` are added to :data:`sys.path`, ``python.modules``
    are imported, and every ``workflow = "module:function"`` target is imported and checked to be
    callable with the arguments the daemon passes. With ``check_files``, the files and programs
    the config names (token and password files, command executables, folders) must exist.

    Raises :class:`ConfigInvalid` with every problem found.
    """
    label = os.fspath(path)
    source_path = Path(label).expanduser().absolute()
    try:
        data = source_path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigInvalid(
            [
                ConfigProblem(
                    label, 1, "", f"cannot read the config file: {reason}", "check the path"
                )
            ]
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigInvalid(
            [ConfigProblem(label, line, "", "the file is not valid UTF-8", "save it as UTF-8")]
        ) from None
    return parse_config(
        text,
        source_path,
        file_label=label,
        import_targets=import_targets,
        check_files=check_files,
    )


def parse_config(
    text: str,
    source_path: str | os.PathLike[str],
    *,
    file_label: str | None = None,
    import_targets: bool = True,
    check_files: bool = True,
) -> Config:
    """Validate config ``text`` as if it were read from ``source_path`` (see :func:`load_config`).

    ``file_label`` is the file name printed in problems (default: ``source_path``).
    """
    source = Path(source_path).expanduser().absolute()
    label = file_label if file_label is not None else os.fspath(source_path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid([_syntax_problem(label, text, str(exc))]) from None
    locator = TomlLocator(text)
    ctx = ConfigContext(
        file=label,
        locator=locator,
        base_dir=source.parent,
        import_targets=import_targets,
        check_files=check_files,
    )
    config = _build(ctx, raw, source, locator)
    if ctx.problems:
        raise ConfigInvalid(sorted(ctx.problems, key=lambda p: p.line))
    return config


def _syntax_problem(label: str, text: str, message: str) -> ConfigProblem:
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        line = int(match.group(1))
        message = message[: match.start()]
    else:
        message = re.sub(r"\s*\(at end of document\)$", "", message)
        lines = text.splitlines()
        line = next((n for n in range(len(lines), 0, -1) if lines[n - 1].strip()), 1)
        message += " at the end of the file"
    message = re.sub(r"\('[^)]*\)", _tuple_to_key_path, message)
    hint = "fix the TOML syntax; see https://toml.io/en/v1.0.0"
    return ConfigProblem(label, line, "", f"TOML syntax error: {message}", hint)


def _tuple_to_key_path(match: re.Match[str]) -> str:
    try:
        parts = ast.literal_eval(match.group())
    except (ValueError, SyntaxError):
        return match.group()
    if isinstance(parts, str):
        parts = (parts,)
    return f"'{format_key_path(parts)}'" if isinstance(parts, tuple) else match.group()


# -- the document ----------------------------------------------------------------------------------


def _build(ctx: ConfigContext, raw: dict[str, Any], source: Path, locator: TomlLocator) -> Config:
    top = Table(ctx, (), raw, _TOP_LEVEL)
    engine = _engine(ctx, top.table("engine"))
    python, module_items = _python(ctx, top.table("python"))
    http = _http(ctx, top.table("http"))
    log = _log(top.table("log"))
    queues = {name: _queue(t) for name, t in _named_tables(ctx, top, "queues", _QUEUE_KEYS)}
    checks = TargetChecks(ctx, python, module_items)
    schedules = {
        name: schedule
        for name, t in _named_tables(ctx, top, "schedules", _SCHEDULE_KEYS)
        if (schedule := _schedule(ctx, t, name, queues, checks)) is not None
    }
    debouncers = {
        name: debouncer
        for name, t in _named_tables(ctx, top, "debouncers", _DEBOUNCER_KEYS)
        if (debouncer := _debouncer(ctx, t, name, queues, checks)) is not None
    }
    if ctx.import_targets:
        checks.run()
    return Config(
        source_path=source,
        engine=engine,
        python=python,
        http=http,
        log=log,
        queues=queues,
        schedules=schedules,
        debouncers=debouncers,
        locator=locator,
    )


def _named_tables(
    ctx: ConfigContext, top: Table, section: str, allowed: Sequence[str]
) -> list[tuple[str, Table]]:
    """The ``[section.NAME]`` tables, each with a valid name, as readers."""
    tables = top.table(section)
    out: list[tuple[str, Table]] = []
    for name, value in tables.data.items():
        path: KeyPath = (section, name)
        if not NAME_PATTERN.fullmatch(name):
            ctx.report(path, f"invalid name {name!r}", _NAME_HINT)
            continue
        if not isinstance(value, dict):
            ctx.report(
                path,
                f"must be a table, not {ctx.describe(value)}",
                f"write it as a [{section}.{name}] table",
            )
            continue
        out.append((name, Table(ctx, path, value, allowed)))
    return out


def _engine(ctx: ConfigContext, t: Table) -> EngineSection:
    t.check_keys(_ENGINE_KEYS)
    name = t.string("name", "keeptime")
    if not NAME_PATTERN.fullmatch(name):
        ctx.report(t.key("name"), f"invalid name {name!r}", _NAME_HINT)
    url = _database_url(ctx, t, t.string("database_url", f"sqlite:///{name}.sqlite"))
    password_file = t.file_path("database_password_file")
    if password_file is not None:
        where = t.key("database_password_file")
        if not url.startswith("postgresql+psycopg://"):
            ctx.report(where, "only PostgreSQL URLs use a password", "remove it for SQLite")
        elif _url_has_password(url):
            ctx.report(
                where,
                "database_url already contains a password",
                "keep the password in one place: remove it from database_url",
            )
        elif ctx.check_files:
            check_readable_secret(ctx, where, password_file, "password file")
    return EngineSection(
        name=name,
        database_url=url,
        application_version=t.nonempty_string("application_version"),
        executor_id=t.nonempty_string("executor_id"),
        database_password_file=password_file,
        max_recovery_attempts=t.integer("max_recovery_attempts", None, minimum=1),
    )


def _database_url(ctx: ConfigContext, t: Table, url: str) -> str:
    where = t.key("database_url")
    hint = "use sqlite:///keeptime.sqlite or postgresql://user@host:5432/dbname"
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        ctx.report(where, f"not a database URL: {url!r}", hint)
        return url
    if scheme == "sqlite":
        return _sqlite_url(ctx, where, url, rest)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        normalized = "postgresql+psycopg://" + rest
        try:
            parsed = make_url(normalized)
            port = parsed.port
        except (ArgumentError, ValueError):
            ctx.report(where, f"invalid PostgreSQL URL {url!r}", hint)
            return normalized
        if port is not None and not 0 < port <= 65535:
            ctx.report(where, f"invalid port {port} in the URL", "use a port between 1 and 65535")
        if not parsed.database:
            ctx.report(where, "the URL names no database", "add it: postgresql://host/dbname")
        return normalized
    if scheme.startswith("postgresql+"):
        ctx.report(
            where,
            f"unsupported PostgreSQL driver {scheme.partition('+')[2]!r}",
            "use postgresql:// or postgresql+psycopg:// (psycopg 3)",
        )
    else:
        ctx.report(where, f"unsupported database {scheme!r}", hint)
    return url


def _url_has_password(url: str) -> bool:
    try:
        return make_url(url).password is not None
    except (ArgumentError, ValueError):
        return False  # the URL itself was reported


def _sqlite_url(ctx: ConfigContext, where: KeyPath, url: str, rest: str) -> str:
    path_text, qmark, query = rest.partition("?")
    file_text = path_text[1:] if path_text.startswith("/") else ""
    if not path_text.startswith("/") or file_text in ("", ":memory:"):
        ctx.report(
            where,
            f"{url!r} is not a SQLite database file",
            "use sqlite:///relative/path.sqlite or sqlite:////absolute/path.sqlite "
            "(an in-memory database would lose all state)",
        )
        return url
    path = resolve_path(ctx.base_dir, file_text)
    if ctx.check_files and not path.parent.is_dir():
        ctx.report(
            where,
            f"the folder of the SQLite file does not exist: {path.parent}",
            "create it (under systemd, StateDirectory= does that)",
        )
    return f"sqlite:///{path}{qmark}{query}"


def _python(ctx: ConfigContext, t: Table) -> tuple[PythonSection, list[tuple[int, str]]]:
    """The section, and the valid module names with their index in the array."""
    t.check_keys(("paths", "modules"))
    paths: list[Path] = []
    for index, text in t.string_items("paths", ["."]):
        path = resolve_path(ctx.base_dir, text)
        if ctx.check_files and not path.is_dir():
            ctx.report(
                t.key("paths", index),
                f"folder {str(path)!r} does not exist",
                "paths are relative to the config file's folder",
            )
        paths.append(path)
    modules: list[tuple[int, str]] = []
    for index, module in t.string_items("modules", []):
        if _MODULE_NAME.fullmatch(module):
            modules.append((index, module))
        else:
            ctx.report(
                t.key("modules", index),
                f"invalid module name {module!r}",
                "use a dotted Python module name, e.g. 'jobs' or 'myapp.jobs'",
            )
    section = PythonSection(paths=tuple(paths), modules=tuple(name for _, name in modules))
    return section, modules


def _http(ctx: ConfigContext, t: Table) -> HttpSection:
    t.check_keys(("listen", "token_file", "max_body_bytes"))
    listen = t.string("listen", "127.0.0.1:8787")
    host, port = _parse_listen(ctx, t.key("listen"), listen)
    token_file = t.file_path("token_file")
    if token_file is None and host and not is_loopback_host(host):
        ctx.report(
            t.key("listen"),
            f"listening on {host!r} (not loopback) needs a bearer token",
            "set http.token_file, e.g. to a systemd credential "
            "/run/credentials/keeptime.service/api-token",
        )
    if token_file is not None and ctx.check_files:
        check_readable_secret(ctx, t.key("token_file"), token_file, "token file")
    max_body = t.integer("max_body_bytes", 1024 * 1024, minimum=1, maximum=1024**3)
    return HttpSection(
        listen=listen, host=host, port=port, token_file=token_file, max_body_bytes=max_body
    )


def _parse_listen(ctx: ConfigContext, where: KeyPath, listen: str) -> tuple[str, int]:
    hint = "write HOST:PORT, e.g. 127.0.0.1:8787, 0.0.0.0:8787 or [::1]:8787"
    if listen.startswith("["):
        host, _, rest = listen[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
    else:
        host, sep, port_text_or_none = listen.rpartition(":")
        port_text = port_text_or_none if sep else None
        if ":" in host:
            ctx.report(where, f"invalid address {listen!r}", "put IPv6 addresses in brackets")
            return "", 0
    if not host or port_text is None:
        ctx.report(where, f"invalid address {listen!r}", hint)
        return host, 0
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        ctx.report(where, f"invalid port {port_text!r}", "use a port between 1 and 65535")
        return host, 0
    return host, int(port_text)


def _log(t: Table) -> LogSection:
    t.check_keys(("format", "level"))
    fmt = t.choice("format", "json", LOG_FORMATS)
    level = t.string("level", "info").lower()
    level = "warning" if level == "warn" else level
    if level not in LOG_LEVELS:
        t.ctx.report(
            t.key("level"),
            f"unknown log level {level!r}",
            suggest(level, LOG_LEVELS, "use one of:"),
        )
        level = "info"
    return LogSection(format=cast(LogFormat, fmt), level=cast(LogLevel, level))


def _queue(t: Table) -> QueueConfig:
    name = str(t.where[-1])
    concurrency = t.integer("concurrency", None, minimum=1)
    worker = t.integer("worker_concurrency", None, minimum=1)
    if concurrency is not None and worker is not None and worker > concurrency:
        t.ctx.report(
            t.key("worker_concurrency"),
            f"worker_concurrency ({worker}) is larger than concurrency ({concurrency})",
            "a process can never run more than the global limit; lower it or raise concurrency",
        )
    limiter: Limiter | None = None
    if t.has("limiter"):
        lt = t.table("limiter")
        lt.check_keys(("limit", "period"))
        limit = lt.integer("limit", None, minimum=1, required=True)
        period = lt.duration("period", None, required=True)
        if limit is not None and period is not None:
            limiter = Limiter(limit=limit, period=period)
    return QueueConfig(
        name=name,
        concurrency=concurrency,
        worker_concurrency=worker,
        limiter=limiter,
        priority_enabled=t.boolean("priority_enabled", False),
        partition_queue=t.boolean("partition_queue", False),
    )


def _queue_ref(ctx: ConfigContext, t: Table, queues: dict[str, QueueConfig]) -> str | None:
    queue = t.string("queue", None)
    if queue is not None and queue not in queues:
        hint = suggest(queue, list(queues), "defined queues:")
        ctx.report(
            t.key("queue"),
            f"unknown queue {queue!r}",
            hint if queues else f"define it in a [queues.{queue}] table",
        )
    return queue


def _schedule(
    ctx: ConfigContext,
    t: Table,
    name: str,
    queues: dict[str, QueueConfig],
    checks: TargetChecks,
) -> ScheduleConfig | None:
    cron = t.string("cron", None, required=True, example='cron = "0 2 * * *"')
    timezone = t.string("timezone", "UTC", example='timezone = "Europe/Berlin"')
    _check_cron(ctx, t, cron, timezone)
    target = parse_target(ctx, t, "scheduled", checks)
    catchup = t.choice("catchup", "latest", CATCHUP_POLICIES)
    window = t.duration("catchup_window", None)
    max_catchup = t.integer("max_catchup", None, minimum=1, maximum=1000)
    if catchup == "all":
        window = window if window is not None else DEFAULT_CATCHUP_WINDOW
        max_catchup = max_catchup if max_catchup is not None else DEFAULT_MAX_CATCHUP
    else:
        for key in ("catchup_window", "max_catchup"):
            if t.has(key):
                ctx.report(
                    t.key(key),
                    f'{key} only applies with catchup = "all" (here catchup = "{catchup}")',
                    'remove it, or set catchup = "all"',
                )
        window, max_catchup = None, None
    queue = _queue_ref(ctx, t, queues)
    timeout = t.duration("timeout", None)
    overlap = t.choice("overlap", "skip", OVERLAP_POLICIES)
    jitter = t.duration("jitter", timedelta(0), allow_zero=True)
    paused = t.boolean("paused", False)
    retries = _retries(t) if t.has("retries") else None
    if cron is None or target is None:
        return None
    return ScheduleConfig(
        name=name,
        cron=cron,
        target=target,
        timezone=timezone,
        queue=queue,
        timeout=timeout,
        catchup=cast(CatchupPolicy, catchup),
        catchup_window=window,
        max_catchup=max_catchup,
        overlap=cast(OverlapPolicy, overlap),
        jitter=jitter,
        paused=paused,
        retries=retries,
    )


def _check_cron(ctx: ConfigContext, t: Table, cron: str | None, timezone: str) -> None:
    """Check the expression and the zone separately, so both can be reported at once."""
    if cron is not None:
        try:
            CronSchedule.parse(cron, "UTC")
        except DBOSInvalidCrontabError as exc:
            problem, hint = split_hint(str(exc), "e.g. '0 2 * * *' runs at 02:00 every day")
            ctx.report(t.key("cron"), problem, hint)
    try:
        CronSchedule.parse("* * * * *", timezone)
    except DBOSUnknownTimezoneError as exc:
        problem, hint = split_hint(str(exc), "use an IANA name such as 'UTC' or 'Europe/Berlin'")
        ctx.report(t.key("timezone") if t.has("timezone") else t.key("cron"), problem, hint)


def _retries(t: Table) -> RetryPolicy:
    rt = t.table("retries")
    rt.check_keys(("max_attempts", "interval", "backoff"))
    return RetryPolicy(
        max_attempts=rt.integer("max_attempts", 3, minimum=1, maximum=1000),
        interval=rt.duration("interval", timedelta(seconds=1)),
        backoff=rt.number("backoff", 2.0, minimum=1.0, maximum=100.0),
    )


def _debouncer(
    ctx: ConfigContext,
    t: Table,
    name: str,
    queues: dict[str, QueueConfig],
    checks: TargetChecks,
) -> DebouncerConfig | None:
    target = parse_target(ctx, t, "debounced", checks)
    period = t.duration("period", None, required=True, example='period = "60s"')
    max_wait = t.duration("max_wait", None)
    if period is not None and max_wait is not None and max_wait < period:
        ctx.report(
            t.key("max_wait"),
            "max_wait is shorter than period, so no input would ever be debounced",
            "make max_wait at least as long as period, or remove it",
        )
    queue = _queue_ref(ctx, t, queues)
    if target is None or period is None:
        return None
    return DebouncerConfig(name=name, target=target, period=period, max_wait=max_wait, queue=queue)
