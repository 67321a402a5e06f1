"""What a schedule or debouncer runs: a Python workflow, a command, or an HTTP webhook.

:func:`parse_target` reads the ``workflow`` / ``command`` / ``http`` keys of one schedule or
debouncer. Workflow targets are only *recorded* there: :class:`TargetChecks` imports them after
the whole file was read, once ``python.paths`` and ``python.modules`` are known.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import shutil
import sys
from datetime import UTC, date, datetime, time, timedelta
from types import ModuleType
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from daemon.config_check import ConfigContext, Table, show
from daemon.config_locate import KeyPath
from daemon.config_model import (
    HTTP_METHODS,
    CommandTarget,
    HttpMethod,
    HttpTarget,
    PythonSection,
    Target,
    WorkflowTarget,
)

__all__ = ["TargetChecks", "TargetKind", "parse_target"]

#: How the daemon calls a workflow: scheduled ones get (scheduled_time, actual_time), debounced
#: ones get the last input.
TargetKind = Literal["scheduled", "debounced"]

_TARGET_KEYS = ("workflow", "command", "http")
_IDENT = r"[A-Za-z_]\w*"
_WORKFLOW_SPEC = re.compile(rf"({_IDENT}(?:\.{_IDENT})*):({_IDENT}(?:\.{_IDENT})*)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TARGET_HINT = (
    'set exactly one of workflow = "module:function", command = ["/path/to/program", "arg"] '
    'or http = { url = "https://..." }'
)
_CALL_HINTS: dict[TargetKind, str] = {
    "scheduled": "a scheduled workflow takes two datetimes: def f(scheduled_time, actual_time)",
    "debounced": "a debounced workflow takes the last input: def f(user_input)",
}


def parse_target(
    ctx: ConfigContext, t: Table, kind: TargetKind, checks: TargetChecks
) -> Target | None:
    """The one target of the schedule or debouncer table ``t``, or ``None`` after reporting."""
    present = [key for key in _TARGET_KEYS if t.has(key)]
    if not present:
        ctx.report(t.where, "no target: nothing to run", _TARGET_HINT)
        return None
    if len(present) > 1:
        ctx.report(
            t.key(present[1]),
            f"{' and '.join(present)} are {'all' if len(present) > 2 else 'both'} set; "
            "a target is exactly one of them",
            "keep one and remove the others",
        )
        return None
    if present[0] == "workflow":
        return _workflow(ctx, t, kind, checks)
    if present[0] == "command":
        return _command(ctx, t)
    return _http(ctx, t)


def _workflow(
    ctx: ConfigContext, t: Table, kind: TargetKind, checks: TargetChecks
) -> WorkflowTarget | None:
    spec = t.string("workflow", None, example='workflow = "jobs:nightly_report"')
    if spec is None:
        return None
    match = _WORKFLOW_SPEC.fullmatch(spec.strip())
    if match is None:
        ctx.report(
            t.key("workflow"),
            f"invalid workflow reference {spec!r}",
            "write module:function, e.g. 'jobs:nightly_report'",
        )
        return None
    target = WorkflowTarget(module=match.group(1), function=match.group(2))
    checks.add(t.key("workflow"), target, kind)
    return target


def _command(ctx: ConfigContext, t: Table) -> CommandTarget | None:
    value = t.data["command"]
    if isinstance(value, dict):
        sub = Table(ctx, t.key("command"), value, ("argv", "cwd", "env", "timeout"))
        where = sub.key("argv")
        argv = _argv(ctx, sub, "argv")
        cwd = sub.file_path("cwd")
        if cwd is not None and ctx.check_files and not cwd.is_dir():
            ctx.report(sub.key("cwd"), f"folder {str(cwd)!r} does not exist", "create it")
        env = _env(ctx, sub)
        timeout = sub.duration("timeout", None)
    elif isinstance(value, list):
        where = t.key("command")
        argv = _argv(ctx, t, "command")
        cwd, env, timeout = None, {}, None
    else:
        ctx.report(
            t.key("command"),
            f"must be an array of strings or a table, not {ctx.describe(value)}",
            'e.g. command = ["/usr/local/bin/backup", "--fast"]',
        )
        return None
    if argv is None:
        return None
    if ctx.check_files:
        _check_program(ctx, (*where, 0), argv[0], env.get("PATH"))
    return CommandTarget(argv=tuple(argv), cwd=cwd, env=env, timeout=timeout)


def _argv(ctx: ConfigContext, t: Table, key: str) -> list[str] | None:
    """The argument vector, or None after reporting (missing, empty, a non-string element)."""
    if not t.has(key):
        ctx.report(
            t.key(key),
            f"the required key {key!r} is missing",
            f'add e.g. {key} = ["/usr/local/bin/backup", "--fast"]',
        )
        return None
    raw = t.data[key]
    argv = t.string_list(key, [])
    if not isinstance(raw, list) or len(argv) != len(raw):
        return None  # string_list reported the wrong type
    if not argv or not argv[0]:
        ctx.report(t.key(key), "the command is empty", "the first element is the program to run")
        return None
    return argv


def _env(ctx: ConfigContext, sub: Table) -> dict[str, str]:
    env = sub.string_map("env")
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            ctx.report(
                sub.key("env", name),
                f"invalid environment variable name {name!r}",
                "use letters, digits and '_', not starting with a digit",
            )
    return env


def _check_program(ctx: ConfigContext, where: KeyPath, program: str, path: str | None) -> None:
    if os.path.isabs(program):
        if not os.path.isfile(program):
            ctx.report(where, f"program {program!r} does not exist", "check the path")
        elif not os.access(program, os.X_OK):
            ctx.report(where, f"program {program!r} is not executable", f"chmod +x {program}")
    elif "/" in program or os.sep in program:
        ctx.report(
            where,
            f"relative program path {program!r}",
            "use an absolute path, or a program name found on PATH",
        )
    elif shutil.which(program, path=path) is None:
        ctx.report(
            where,
            f"program {program!r} not found on PATH",
            "use an absolute path, install the program, or set PATH in command.env",
        )


def _http(ctx: ConfigContext, t: Table) -> HttpTarget | None:
    if not isinstance(t.data["http"], dict):
        ctx.report(
            t.key("http"),
            f"must be a table, not {ctx.describe(t.data['http'])}",
            'e.g. http = { url = "https://example.com/hook", method = "POST" }',
        )
        return None
    sub = t.table("http")
    sub.check_keys(("url", "method", "headers", "body", "timeout"))
    url = sub.string("url", None, required=True, example='url = "https://example.com/hook"')
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            ctx.report(
                sub.key("url"),
                f"invalid webhook URL {url!r}",
                "use an absolute http:// or https:// URL",
            )
            url = None
    method = sub.string("method", "POST").upper()
    if method not in HTTP_METHODS:
        ctx.report(
            sub.key("method"),
            f"unsupported method {method!r}",
            f"use one of: {', '.join(HTTP_METHODS)}",
        )
        method = "POST"
    headers = sub.string_map("headers")
    body = sub.data.get("body")
    if body is not None:
        if method == "GET":
            ctx.report(sub.key("body"), "a GET request has no body", "use POST, or remove body")
        _check_json(ctx, sub.key("body"), body)
    timeout = sub.duration("timeout", timedelta(seconds=30))
    if url is None:
        return None
    return HttpTarget(
        url=url, method=cast(HttpMethod, method), headers=headers, body=body, timeout=timeout
    )


def _check_json(ctx: ConfigContext, where: KeyPath, value: object) -> None:
    """The body is sent as JSON, which has no dates or times."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json(ctx, (*where, key), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(ctx, (*where, index), item)
    elif isinstance(value, datetime | date | time):
        ctx.report(
            where,
            f"JSON has no dates or times: {show(value)}",
            f'write it as a string: "{value.isoformat()}"',
        )


class TargetChecks:
    """Imports ``python.modules`` and every workflow target, and checks they can be called."""

    def __init__(
        self, ctx: ConfigContext, python: PythonSection, modules: list[tuple[int, str]]
    ) -> None:
        self.ctx = ctx
        self.python = python
        self.modules = modules  # (index in python.modules as written, name)
        self.pending: list[tuple[KeyPath, WorkflowTarget, TargetKind]] = []
        self._modules: dict[str, ModuleType | str] = {}

    def add(self, where: KeyPath, target: WorkflowTarget, kind: TargetKind) -> None:
        self.pending.append((where, target, kind))

    def run(self) -> None:
        for path in reversed(self.python.paths):
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
        for index, name in self.modules:
            module = self._import(name)
            if isinstance(module, str):
                self.ctx.report(("python", "modules", index), module, self._import_hint())
        for where, target, kind in self.pending:
            self._check(where, target, kind)

    def _import(self, name: str) -> ModuleType | str:
        """The module, or the text of the error that importing it raised."""
        if name not in self._modules:
            try:
                self._modules[name] = importlib.import_module(name)
            except Exception as exc:
                self._modules[name] = f"cannot import module {name!r}: {type(exc).__name__}: {exc}"
        return self._modules[name]

    def _import_hint(self) -> str:
        paths = ", ".join(str(p) for p in self.python.paths) or "(none)"
        return f"python.paths lists the folders to import from: {paths}"

    def _check(self, where: KeyPath, target: WorkflowTarget, kind: TargetKind) -> None:
        module = self._import(target.module)
        if isinstance(module, str):
            self.ctx.report(where, module, self._import_hint())
            return
        obj: Any = module
        for part in target.function.split("."):
            if not hasattr(obj, part):
                names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))]
                close = difflib.get_close_matches(part, names, n=1)
                self.ctx.report(
                    where,
                    f"{target.spec!r}: {getattr(obj, '__name__', target.module)!r} "
                    f"has no attribute {part!r}",
                    f"did you mean {close[0]!r}?" if close else "check the function name",
                )
                return
            obj = getattr(obj, part)
        if not callable(obj):
            self.ctx.report(
                where,
                f"{target.spec!r} is not callable (it is {type(obj).__name__})",
                "point to a function decorated with @DBOS.workflow()",
            )
            return
        self._check_call(where, target, kind, obj)

    def _check_call(
        self, where: KeyPath, target: WorkflowTarget, kind: TargetKind, fn: Any
    ) -> None:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return  # builtins and some wrappers have no signature; nothing to check
        now = datetime.now(UTC)
        args: tuple[object, ...] = (now, now) if kind == "scheduled" else (None,)
        try:
            signature.bind(*args)
        except TypeError as exc:
            self.ctx.report(
                where,
                f"{target.spec!r} cannot be called as a {kind} workflow: {exc}",
                _CALL_HINTS[kind],
            )
