"""Human-friendly durations: ``"500ms"``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"2d"``.

A config value may also be a plain number of seconds (``30`` or ``0.5``). Strings always need a
unit, because ``"30"`` is too easy to misread as minutes.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["DurationError", "format_duration", "parse_duration"]

DURATION_HINT = "use a number with a unit: 500ms, 30s, 10m, 2h, 1d, or combinations like 1h30m"

# Largest unit first: the order in which components must appear.
_UNITS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = list(_UNITS)
_COMPONENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|d|h|m|s)")


class DurationError(ValueError):
    """A value is not a valid duration. ``problem`` says what is wrong, ``hint`` how to fix it."""

    def __init__(self, problem: str, hint: str = DURATION_HINT) -> None:
        super().__init__(f"{problem} ({hint})" if hint else problem)
        self.problem = problem
        self.hint = hint


def parse_duration(value: object, *, allow_zero: bool = False) -> timedelta:
    """Parse ``value`` into a :class:`~datetime.timedelta`.

    ``value`` is a string with units (``"1h30m"``, ``"500ms"``, ``"1.5h"``) or a plain int/float
    number of seconds. The result must be positive, or zero when ``allow_zero`` is true.
    Raises :class:`DurationError` with a message that names the bad value.
    """
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise DurationError(f"invalid duration {value!r}")
        return _checked(seconds, value, allow_zero)
    if not isinstance(value, str):
        raise DurationError(f"invalid duration {value!r}")
    return _checked(_parse_text(value), value, allow_zero)


def _parse_text(text: str) -> float:
    stripped = text.strip()
    if not stripped:
        raise DurationError("invalid duration '': the value is empty")
    if re.fullmatch(r"\d+(\.\d+)?", stripped):
        raise DurationError(
            f"invalid duration {text!r}: the unit is missing",
            f"add a unit, e.g. '{stripped}s' for seconds or '{stripped}m' for minutes",
        )
    total = 0.0
    pos = 0
    last_rank = -1
    for match in _COMPONENT.finditer(stripped):
        if match.start() != pos and stripped[pos : match.start()].strip():
            break
        unit = match.group(2)
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_rank:
            raise DurationError(
                f"invalid duration {text!r}: units must go from largest to smallest, "
                "each at most once",
                "write e.g. 1h30m, not 30m1h",
            )
        last_rank = rank
        total += float(match.group(1)) * _UNITS[unit]
        pos = match.end()
    if last_rank < 0 or stripped[pos:].strip():
        raise DurationError(f"invalid duration {text!r}")
    return total


def _checked(seconds: float, original: object, allow_zero: bool) -> timedelta:
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise DurationError(
            f"duration {original!r} must be {'zero or ' if allow_zero else ''}positive",
            "use e.g. 30s",
        )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise DurationError(
            f"duration {original!r} is too large", "durations must be shorter than 999999999d"
        ) from None


def format_duration(value: timedelta) -> str:
    """The shortest unit string for ``value``: ``timedelta(minutes=90)`` -> ``"1h30m"``.

    Inverse of :func:`parse_duration` for non-negative values, to millisecond precision.
    """
    ms = round(value.total_seconds() * 1000)
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    if ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return sign + "".join(parts)
