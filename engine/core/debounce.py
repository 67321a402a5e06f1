"""Debounce window arithmetic and argument checks. Pure: every instant is an argument (epoch ms).

A window opens at its first call. Each call moves its deadline to ``call + period``, but never past
``first call + max_wait`` when a max wait is set. See docs/debouncing.md.
"""

from __future__ import annotations

import math

from engine.error import DBOSInvalidArgumentError

__all__ = ["check_max_wait", "check_period", "next_fire_at", "open_window", "seconds_to_ms"]


def check_period(period_sec: object) -> float:
    """A debounce period: a finite number of seconds > 0."""
    if (
        isinstance(period_sec, bool)
        or not isinstance(period_sec, int | float)
        or not math.isfinite(period_sec)
        or period_sec <= 0
    ):
        raise DBOSInvalidArgumentError(
            f"debounce_period_sec must be a number of seconds > 0, got {period_sec!r}"
        )
    return float(period_sec)


def check_max_wait(max_wait_sec: object, what: str = "debounce_timeout_sec") -> float | None:
    """An optional cap on a window's length: None, or a finite number of seconds > 0."""
    if max_wait_sec is None:
        return None
    if (
        isinstance(max_wait_sec, bool)
        or not isinstance(max_wait_sec, int | float)
        or not math.isfinite(max_wait_sec)
        or max_wait_sec <= 0
    ):
        raise DBOSInvalidArgumentError(
            f"{what} must be None or a number of seconds > 0, got {max_wait_sec!r}"
        )
    return float(max_wait_sec)


def seconds_to_ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def open_window(now_ms: int, period_ms: int, max_wait_ms: int | None) -> tuple[int, int | None]:
    """(deadline, latest possible deadline) of a window whose first call is at ``now_ms``."""
    max_at = None if max_wait_ms is None else now_ms + max_wait_ms
    return next_fire_at(now_ms, period_ms, max_at), max_at


def next_fire_at(now_ms: int, period_ms: int, max_fire_at_ms: int | None) -> int:
    """The deadline after a call at ``now_ms``: a quiet ``period`` later, capped by the max."""
    quiet = now_ms + period_ms
    return quiet if max_fire_at_ms is None else min(quiet, max_fire_at_ms)
