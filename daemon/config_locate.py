"""Map TOML key paths to line numbers.

:mod:`tomllib` returns plain dicts without positions, so config errors would have no line numbers.
:class:`TomlLocator` scans the source text once, following TOML's structure (table headers,
arrays of tables, dotted and quoted keys, inline tables, arrays spanning lines, strings of every
kind, comments) without building values, and remembers on which line each key path appears.

Array elements are addressed by their integer index: ``("schedules", "backup", "command", 1)``.
A path that cannot be found falls back to its nearest located ancestor, then to line 1, so the
caller always gets a usable line.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import re
from collections.abc import Sequence

__all__ = ["KeyPath", "TomlLocator", "format_key_path"]

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}$")
_SCALAR_END = frozenset(",]}#\n\r \t")


def format_key_path(path: Sequence[str | int]) -> str:
    """Render a key path the way it would be written in TOML: ``schedules."a b".command[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        out += f".{text}" if out else text
    return out


class TomlLocator:
    """Line numbers of the keys of one TOML document.

    Built from the source text; tolerant of malformed input (it keeps what it found before the
    first thing it does not understand).
    """

    def __init__(self, source: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        scanner = _Scanner(source, self._lines)
        with contextlib.suppress(_StopScan):
            scanner.run()

    def exact_line(self, path: Sequence[str | int]) -> int | None:
        """The line where ``path`` is defined, or ``None`` if it does not appear in the text."""
        return self._lines.get(tuple(path))

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, else of its nearest located ancestor, else 1."""
        key = tuple(path)
        while key:
            line = self._lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return 1

    def __len__(self) -> int:
        return len(self._lines)


class _StopScan(Exception):
    """The text is not valid TOML here; keep the positions found so far."""


class _Scanner:
    def __init__(self, text: str, out: dict[KeyPath, int]) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.out = out
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.explicit: set[KeyPath] = set()
        self.array_tables: dict[KeyPath, int] = {}

    # -- positions -------------------------------------------------------------------------------

    def line_at(self, index: int) -> int:
        return bisect.bisect_left(self.newlines, index) + 1

    def record(self, path: KeyPath, line: int, *, explicit: bool = True) -> None:
        for end in range(1, len(path)):
            self.out.setdefault(path[:end], line)
        if explicit and path not in self.explicit:
            self.explicit.add(path)
            self.out[path] = line
        else:
            self.out.setdefault(path, line)

    # -- low-level reading -----------------------------------------------------------------------

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.s[j] if j < self.n else ""

    def expect(self, token: str) -> None:
        if not self.s.startswith(token, self.i):
            raise _StopScan
        self.i += len(token)

    def skip_blanks(self) -> None:
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1

    def skip_comment(self) -> None:
        if self.peek() == "#":
            end = self.s.find("\n", self.i)
            self.i = self.n if end < 0 else end

    def skip_space(self) -> None:
        """Blanks, newlines and comments."""
        while self.i < self.n:
            c = self.s[self.i]
            if c in " \t\r\n":
                self.i += 1
            elif c == "#":
                self.skip_comment()
            else:
                return

    # -- document structure ----------------------------------------------------------------------

    def run(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_space()
            if self.i >= self.n:
                return
            line = self.line_at(self.i)
            if self.s.startswith("[[", self.i):
                self.i += 2
                table = self.array_table_header(self.read_key(), line)
                self.skip_blanks()
                self.expect("]]")
            elif self.peek() == "[":
                self.i += 1
                table = self.resolve(self.read_key())
                self.record(table, line)
                self.skip_blanks()
                self.expect("]")
            else:
                self.key_value(table)
            self.skip_blanks()
            self.skip_comment()
            if self.i < self.n and self.peek() not in "\r\n":
                raise _StopScan

    def resolve(self, key: list[str]) -> KeyPath:
        """A header's key path, with the current index of every array of tables it passes."""
        path: KeyPath = ()
        for part in key:
            path = (*path, part)
            count = self.array_tables.get(path)
            if count is not None:
                path = (*path, count - 1)
        return path

    def array_table_header(self, key: list[str], line: int) -> KeyPath:
        parent = self.resolve(key[:-1])
        path = (*parent, key[-1])
        index = self.array_tables.get(path, 0)
        self.array_tables[path] = index + 1
        self.record(path, line, explicit=False)
        self.record((*path, index), line)
        return (*path, index)

    def key_value(self, table: KeyPath) -> None:
        line = self.line_at(self.i)
        path = (*table, *self.read_key())
        self.skip_blanks()
        self.expect("=")
        self.skip_blanks()
        self.record(path, line)
        self.value(path)

    # -- keys --------------------------------------------------------------------------------------

    def read_key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_blanks()
            parts.append(self.key_part())
            self.skip_blanks()
            if self.peek() != ".":
                return parts
            self.i += 1

    def key_part(self) -> str:
        c = self.peek()
        if c == '"':
            start = self.i + 1
            self.skip_basic_string()
            raw = self.s[start : self.i - 1]
            try:
                decoded = json.loads(f'"{raw}"')
            except ValueError:
                return raw
            return decoded if isinstance(decoded, str) else raw
        if c == "'":
            start = self.i + 1
            self.skip_literal_string()
            return self.s[start : self.i - 1]
        match = _BARE_KEY.match(self.s, self.i)
        if match is None:
            raise _StopScan
        self.i = match.end()
        return match.group()

    # -- values ------------------------------------------------------------------------------------

    def value(self, path: KeyPath) -> None:
        if self.s.startswith('"""', self.i):
            self.skip_multiline('"""', escapes=True)
        elif self.s.startswith("'''", self.i):
            self.skip_multiline("'''", escapes=False)
        elif self.peek() == '"':
            self.skip_basic_string()
        elif self.peek() == "'":
            self.skip_literal_string()
        elif self.peek() == "[":
            self.array(path)
        elif self.peek() == "{":
            self.inline_table(path)
        else:
            self.scalar()

    def array(self, path: KeyPath) -> None:
        self.i += 1
        index = 0
        while True:
            self.skip_space()
            if self.peek() == "]":
                self.i += 1
                return
            element = (*path, index)
            self.record(element, self.line_at(self.i))
            self.value(element)
            self.skip_space()
            if self.peek() == ",":
                self.i += 1
                index += 1
            elif self.peek() == "]":
                self.i += 1
                return
            else:
                raise _StopScan

    def inline_table(self, path: KeyPath) -> None:
        self.i += 1
        self.skip_space()
        if self.peek() == "}":
            self.i += 1
            return
        while True:
            self.skip_space()
            self.key_value(path)
            self.skip_space()
            if self.peek() == ",":
                self.i += 1
            elif self.peek() == "}":
                self.i += 1
                return
            else:
                raise _StopScan

    def scalar(self) -> None:
        start = self.i
        while self.i < self.n and self.s[self.i] not in _SCALAR_END:
            self.i += 1
        # A date-time may use a space instead of "T": 1979-05-27 07:32:00Z.
        if (
            _DATE_PREFIX.match(self.s[start : self.i])
            and self.peek() == " "
            and self.peek(1).isdigit()
        ):
            self.i += 1
            self.scalar()
        elif self.i == start:
            raise _StopScan

    # -- strings -----------------------------------------------------------------------------------

    def skip_basic_string(self) -> None:
        self.i += 1
        while self.i < self.n:
            c = self.s[self.i]
            if c == "\\":
                self.i += 2
            elif c == '"':
                self.i += 1
                return
            elif c == "\n":
                break
            else:
                self.i += 1
        raise _StopScan

    def skip_literal_string(self) -> None:
        end = self.s.find("'", self.i + 1)
        newline = self.s.find("\n", self.i + 1)
        if end < 0 or 0 <= newline < end:
            raise _StopScan
        self.i = end + 1

    def skip_multiline(self, quote: str, *, escapes: bool) -> None:
        self.i += 3
        while self.i < self.n:
            if escapes and self.s[self.i] == "\\":
                self.i += 2
            elif self.s.startswith(quote, self.i):
                self.i += 3
                # Up to two quotes may directly precede the closing delimiter: """a""""".
                for _ in range(2):
                    if self.peek() == quote[0]:
                        self.i += 1
                return
            else:
                self.i += 1
        raise _StopScan
