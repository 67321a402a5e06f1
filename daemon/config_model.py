"""The validated configuration of the daemon: frozen dataclasses, and the config error types.

:func:`daemon.config.load_config` builds these from a TOML file; everything here is already
checked, normalized (durations are :class:`~datetime.timedelta`, paths are absolute, the
database URL is resolved) and safe to use without further validation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

from daemon.config_locate import KeyPath, TomlLocator, format_key_path
from engine.error import DBOSConfigError

__all__ = [
    "CATCHUP_POLICIES",
    "HTTP_METHODS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "NAME_PATTERN",
    "OVERLAP_POLICIES",
    "CatchupPolicy",
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
    "LogFormat",
    "LogLevel",
    "LogSection",
    "OverlapPolicy",
    "PythonSection",
    "QueueConfig",
    "RetryPolicy",
    "ScheduleConfig",
    "Target",
    "WorkflowTarget",
]

CatchupPolicy = Literal["none", "latest", "all"]
OverlapPolicy = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "allow"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

CATCHUP_POLICIES: tuple[CatchupPolicy, ...] = ("none", "latest", "all")
OVERLAP_POLICIES: tuple[OverlapPolicy, ...] = (
    "skip",
    "buffer_one",
    "buffer_all",
    "cancel_other",
    "allow",
)
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "console")
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error", "critical")
HTTP_METHODS: tuple[HttpMethod, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")

#: Names of queues, schedules and debouncers (they end up in workflow IDs and URLs).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


# -- errors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, located by file, line and key path."""

    file: str
    line: int
    key_path: str
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: "
        text += f"{self.key_path}: {self.problem}" if self.key_path else self.problem
        return f"{text} ({self.hint})" if self.hint else text


class ConfigInvalid(DBOSConfigError):
    """The config file has one or more problems; ``str()`` prints one line per problem."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.problems,))


# -- sections --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSection:
    """``[engine]``: how the workflow engine runs and where it keeps its state."""

    name: str = "keeptime"
    #: Resolved: SQLite paths are absolute, ``postgresql://`` became ``postgresql+psycopg://``.
    #: Never contains the password from ``database_password_file``.
    database_url: str = "sqlite:///keeptime.sqlite"
    application_version: str | None = None
    executor_id: str | None = None
    database_password_file: Path | None = None
    max_recovery_attempts: int | None = None

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql+psycopg://")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


@dataclass(frozen=True)
class PythonSection:
    """``[python]``: where workflow code lives and which modules to import at start."""

    paths: tuple[Path, ...] = ()
    modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpSection:
    """``[http]``: the HTTP API listener."""

    listen: str = "127.0.0.1:8787"
    host: str = "127.0.0.1"
    port: int = 8787
    token_file: Path | None = None
    max_body_bytes: int = 1024 * 1024

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class LogSection:
    """``[log]``: structured logs on stdout."""

    format: LogFormat = "json"
    level: LogLevel = "info"


@dataclass(frozen=True)
class Limiter:
    """A queue's rate limit: at most ``limit`` starts per ``period``."""

    limit: int
    period: timedelta


@dataclass(frozen=True)
class QueueConfig:
    """``[queues.NAME]``: flow control for the work of schedules and debouncers."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    limiter: Limiter | None = None
    priority_enabled: bool = False
    partition_queue: bool = False

    def queue_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``engine.Queue(name, **kwargs)`` (only the ones that are set)."""
        kwargs: dict[str, object] = {}
        if self.concurrency is not None:
            kwargs["concurrency"] = self.concurrency
        if self.worker_concurrency is not None:
            kwargs["worker_concurrency"] = self.worker_concurrency
        if self.limiter is not None:
            kwargs["limiter"] = {
                "limit": self.limiter.limit,
                "period": self.limiter.period.total_seconds(),
            }
        if self.priority_enabled:
            kwargs["priority_enabled"] = True
        if self.partition_queue:
            kwargs["partition_queue"] = True
        return kwargs


# -- targets ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowTarget:
    """``workflow = "module:function"``: a Python workflow, imported from ``python.paths``."""

    module: str
    function: str

    @property
    def spec(self) -> str:
        return f"{self.module}:{self.function}"

    def describe(self) -> str:
        return f"workflow {self.spec}"


@dataclass(frozen=True)
class CommandTarget:
    """``command = [...]`` or ``command = { argv = [...], cwd, env, timeout }``."""

    argv: tuple[str, ...]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: timedelta | None = None

    def describe(self) -> str:
        return "command " + " ".join(self.argv)


@dataclass(frozen=True)
class HttpTarget:
    """``http = { url, method, headers, body, timeout }``: a webhook; ``body`` is sent as JSON."""

    url: str
    method: HttpMethod = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: object = None
    timeout: timedelta = timedelta(seconds=30)

    def describe(self) -> str:
        return f"http {self.method} {self.url}"


Target = WorkflowTarget | CommandTarget | HttpTarget


@dataclass(frozen=True)
class RetryPolicy:
    """``retries = { max_attempts, interval, backoff }``.

    The wait before attempt n+1 is ``interval * backoff ** (n - 1)``.
    """

    max_attempts: int = 3
    interval: timedelta = timedelta(seconds=1)
    backoff: float = 2.0


@dataclass(frozen=True)
class ScheduleConfig:
    """``[schedules.NAME]``: run a target at each tick of a crontab expression."""

    name: str
    cron: str
    target: Target
    timezone: str = "UTC"
    queue: str | None = None
    timeout: timedelta | None = None
    catchup: CatchupPolicy = "latest"
    #: Only set when ``catchup == "all"``: how far back missed ticks count, and at most how many.
    catchup_window: timedelta | None = None
    max_catchup: int | None = None
    overlap: OverlapPolicy = "skip"
    jitter: timedelta = timedelta(0)
    paused: bool = False
    retries: RetryPolicy | None = None


@dataclass(frozen=True)
class DebouncerConfig:
    """``[debouncers.NAME]``: run a target once, a quiet ``period`` after the last input."""

    name: str
    target: Target
    period: timedelta
    max_wait: timedelta | None = None
    queue: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated config file."""

    source_path: Path
    engine: EngineSection = field(default_factory=EngineSection)
    python: PythonSection = field(default_factory=PythonSection)
    http: HttpSection = field(default_factory=HttpSection)
    log: LogSection = field(default_factory=LogSection)
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    schedules: dict[str, ScheduleConfig] = field(default_factory=dict)
    debouncers: dict[str, DebouncerConfig] = field(default_factory=dict)
    #: Line numbers of the source, to report problems found after loading (not compared).
    locator: TomlLocator = field(default_factory=lambda: TomlLocator(""), compare=False, repr=False)

    @property
    def config_dir(self) -> Path:
        """The folder relative paths in the file are resolved against."""
        return self.source_path.parent

    def problem(self, key_path: KeyPath, problem: str, hint: str = "") -> ConfigProblem:
        """A :class:`ConfigProblem` about ``key_path``, located in this config's source file."""
        return ConfigProblem(
            file=str(self.source_path),
            line=self.locator.line_of(key_path),
            key_path=format_key_path(key_path),
            problem=problem,
            hint=hint,
        )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
