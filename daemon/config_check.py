"""Typed reading of raw TOML tables, collecting every problem instead of stopping at the first.

A :class:`Table` wraps one parsed TOML table. Its getters check the type (and range, duration
syntax, allowed choices) of one key, report what is wrong to the shared :class:`ConfigContext`
with the key's line number, and return a usable default so validation can go on.

Also here: the secret files (API token, database password), checked at load time and read at
run time. Import these from :mod:`daemon.config`.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from daemon.config_locate import KeyPath, TomlLocator, format_key_path
from daemon.config_model import Config, ConfigInvalid, ConfigProblem
from daemon.durations import DurationError, parse_duration

__all__ = [
    "ConfigContext",
    "Table",
    "check_readable_secret",
    "database_url_with_password",
    "read_database_password",
    "read_token",
    "resolve_path",
    "split_hint",
    "suggest",
]

_D = TypeVar("_D")


@dataclass
class ConfigContext:
    """Shared state of one validation pass: where problems go and how to locate them."""

    file: str
    locator: TomlLocator
    base_dir: Path
    import_targets: bool = True
    check_files: bool = True
    problems: list[ConfigProblem] = field(default_factory=list)

    def report(self, where: KeyPath, problem: str, hint: str = "") -> None:
        self.problems.append(
            ConfigProblem(
                file=self.file,
                line=self.locator.line_of(where),
                key_path=format_key_path(where),
                problem=problem,
                hint=hint,
            )
        )

    @staticmethod
    def describe(value: object) -> str:
        """``value``'s TOML type and a short rendering of it: ``an integer (5)``."""
        return f"{type_name(value)} ({show(value)})"


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return type(value).__name__


def show(value: object, limit: int = 40) -> str:
    """A short TOML-like rendering of a value for messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "{ " + ", ".join(f"{k} = {show(v, limit)}" for k, v in value.items()) + " }"
    elif isinstance(value, list):
        text = "[" + ", ".join(show(v, limit) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(word: str, options: Sequence[str], lead: str = "valid values:") -> str:
    """``did you mean 'x'?`` for a close option, else the list of options."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{lead} {', '.join(options)}" if options else ""


def split_hint(message: str, default_hint: str) -> tuple[str, str]:
    """Split ``"problem (hint)"`` as written by engine errors; else use ``default_hint``."""
    if message.endswith(")"):
        depth = 0
        for index in range(len(message) - 1, 0, -1):
            depth += {")": 1, "(": -1}.get(message[index], 0)
            if depth == 0:
                if message[index - 1] == " ":
                    return message[: index - 1], message[index + 1 : -1]
                break
    return message, default_hint


def resolve_path(base_dir: Path, text: str) -> Path:
    """``text`` as an absolute path; relative paths are taken from ``base_dir``."""
    return Path(os.path.normpath(base_dir / Path(text).expanduser()))


def check_readable_secret(ctx: ConfigContext, where: KeyPath, path: Path, what: str) -> None:
    """Report if the secret file is missing, unreadable or empty (its content is not kept)."""
    hint = (
        "create it with a random secret (e.g. openssl rand -hex 32), or pass it as a "
        "systemd credential (LoadCredential=) and point here to /run/credentials/..."
    )
    if not path.exists():
        ctx.report(where, f"the {what} {str(path)!r} does not exist", hint)
        return
    if not path.is_file():
        ctx.report(where, f"the {what} {str(path)!r} is not a regular file", hint)
        return
    try:
        content = path.read_bytes()
    except OSError as exc:
        ctx.report(
            where,
            f"cannot read the {what} {str(path)!r}: {exc.strerror or exc}",
            "make it readable by the user the daemon runs as",
        )
        return
    if not content.strip():
        ctx.report(where, f"the {what} {str(path)!r} is empty", hint)


class Table:
    """Reader for one TOML table at key path ``where``."""

    def __init__(
        self,
        ctx: ConfigContext,
        where: KeyPath,
        data: dict[str, Any],
        allowed: Sequence[str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.where = where
        self.data = data
        self.misspelled: set[str] = set()  # valid keys that an unknown key was close to
        if allowed is not None:
            self.check_keys(allowed)

    def key(self, *parts: str | int) -> KeyPath:
        return (*self.where, *parts)

    def has(self, key: str) -> bool:
        return key in self.data

    def check_keys(self, allowed: Sequence[str]) -> None:
        """Report every key that is not in ``allowed``, suggesting the closest valid one."""
        for key in self.data:
            if key not in allowed:
                hint = suggest(key, allowed, "valid keys:")
                self.ctx.report(self.key(key), f"unknown key {key!r}", hint)
                close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
                self.misspelled.update(close)

    def _typed(self, key: str, types: tuple[type, ...], expected: str, example: str | None) -> Any:
        """The value if it has one of ``types`` (bool never counts as a number), else None."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
            return value
        hint = f"e.g. {example}" if example else ""
        if not hint and expected == "a string":
            hint = f'write it in quotes: {key} = "{show(value).strip(chr(34))}"'
        self.ctx.report(self.key(key), f"must be {expected}, not {self.ctx.describe(value)}", hint)
        return None

    def _missing(self, key: str, required: bool, example: str | None) -> None:
        # A misspelled key was reported already ("did you mean ...?"); do not report it twice.
        if required and key not in self.data and key not in self.misspelled:
            hint = f"add e.g. {example}" if example else ""
            self.ctx.report(self.key(key), f"the required key {key!r} is missing", hint)

    def table(self, key: str) -> Table:
        """The sub-table (an empty one if it is missing or not a table)."""
        value = self._typed(key, (dict,), "a table", None)
        return Table(self.ctx, self.key(key), value if value is not None else {})

    def string(
        self, key: str, default: _D, *, required: bool = False, example: str | None = None
    ) -> str | _D:
        self._missing(key, required, example)
        value = self._typed(key, (str,), "a string", example)
        return default if value is None else str(value)

    def nonempty_string(self, key: str) -> str | None:
        value = self.string(key, None)
        if value is not None and not value.strip():
            self.ctx.report(self.key(key), "must not be empty", "remove the key or give a value")
            return None
        return value

    def file_path(self, key: str) -> Path | None:
        """A path, resolved against the config file's folder."""
        value = self.nonempty_string(key)
        return None if value is None else resolve_path(self.ctx.base_dir, value)

    def integer(
        self,
        key: str,
        default: _D,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        required: bool = False,
    ) -> int | _D:
        self._missing(key, required, None)
        value = self._typed(key, (int,), "an integer", None)
        if value is None:
            return default
        if not self._in_range(key, value, minimum, maximum):
            return default
        return int(value)

    def number(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self._typed(key, (int, float), "a number", None)
        if value is None or not self._in_range(key, value, minimum, maximum):
            return default
        return float(value)

    def _in_range(
        self, key: str, value: float, minimum: float | None, maximum: float | None
    ) -> bool:
        if minimum is not None and value < minimum:
            must = "positive" if minimum == 1 and isinstance(value, int) else f">= {minimum}"
            self.ctx.report(
                self.key(key),
                f"must be {must}, not {show(value)}",
                self._range_hint(minimum, maximum),
            )
            return False
        if maximum is not None and value > maximum:
            self.ctx.report(
                self.key(key),
                f"must be at most {maximum}, not {show(value)}",
                self._range_hint(minimum, maximum),
            )
            return False
        return True

    @staticmethod
    def _range_hint(minimum: float | None, maximum: float | None) -> str:
        if minimum is not None and maximum is not None:
            return f"use a value between {minimum} and {maximum}"
        if minimum is not None:
            return f"use a value of at least {minimum}"
        return f"use a value of at most {maximum}"

    def boolean(self, key: str, default: bool) -> bool:
        value = self._typed(key, (bool,), "a boolean (true or false)", f"{key} = true")
        return default if value is None else bool(value)

    def duration(
        self,
        key: str,
        default: _D,
        *,
        allow_zero: bool = False,
        required: bool = False,
        example: str | None = None,
    ) -> timedelta | _D:
        self._missing(key, required, example)
        value = self._typed(key, (str, int, float), "a duration", example or f'{key} = "30s"')
        if value is None:
            return default
        try:
            return parse_duration(value, allow_zero=allow_zero)
        except DurationError as exc:
            self.ctx.report(self.key(key), exc.problem, exc.hint)
            return default

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.string(key, default)
        if value not in choices:
            self.ctx.report(
                self.key(key),
                f"unknown value {value!r}",
                suggest(value, choices, "use one of:"),
            )
            return default
        return value

    def string_items(self, key: str, default: list[str]) -> list[tuple[int, str]]:
        """The strings of an array with their index; other elements are reported and skipped."""
        value = self._typed(key, (list,), "an array of strings", f'{key} = ["..."]')
        if value is None:
            return list(enumerate(default))
        out: list[tuple[int, str]] = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                out.append((index, item))
            else:
                self.ctx.report(
                    self.key(key, index),
                    f"must be a string, not {self.ctx.describe(item)}",
                    "every element of the array is a string in quotes",
                )
        return out

    def string_list(self, key: str, default: list[str]) -> list[str]:
        return [item for _, item in self.string_items(key, default)]

    def string_map(self, key: str) -> dict[str, str]:
        """A table whose values are all strings."""
        value = self._typed(key, (dict,), "a table of strings", f'{key} = {{ NAME = "value" }}')
        if value is None:
            return {}
        out: dict[str, str] = {}
        for name, item in value.items():
            if isinstance(item, str):
                out[name] = item
            else:
                self.ctx.report(
                    self.key(key, name),
                    f"must be a string, not {self.ctx.describe(item)}",
                    f'write it in quotes: {name} = "{show(item).strip(chr(34))}"',
                )
        return out


# -- secrets at run time ---------------------------------------------------------------------------


def read_token(config: Config) -> str | None:
    """The HTTP API bearer token from ``http.token_file``, or ``None`` when none is configured.

    Read at each call (systemd credentials may be rotated). Raises :class:`ConfigInvalid` if the
    file cannot be read or is empty.
    """
    if config.http.token_file is None:
        return None
    return _read_secret(config, ("http", "token_file"), config.http.token_file, "token file")


def read_database_password(config: Config) -> str | None:
    """The password from ``engine.database_password_file``, or ``None`` when none is configured."""
    path = config.engine.database_password_file
    if path is None:
        return None
    return _read_secret(config, ("engine", "database_password_file"), path, "password file")


def database_url_with_password(config: Config) -> str:
    """``engine.database_url`` with the password from ``database_password_file`` filled in.

    Keep the result out of logs: it contains the secret.
    """
    password = read_database_password(config)
    if password is None:
        return config.engine.database_url
    url = make_url(config.engine.database_url).set(password=password)
    return url.render_as_string(hide_password=False)


def _read_secret(config: Config, where: KeyPath, path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigInvalid(
            [config.problem(where, f"cannot read the {what} {str(path)!r}: {reason}")]
        ) from None
    if not value:
        raise ConfigInvalid([config.problem(where, f"the {what} {str(path)!r} is empty")])
    return value
