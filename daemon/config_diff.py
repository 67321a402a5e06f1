"""What changed between two configs: the schedules and debouncers a reload applies.

Sections that a running daemon cannot change in place (engine, python, http, log, queues) are
reported too, so the reload can say that they need a restart instead of silently ignoring them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TypeVar

from daemon.config_model import Config

__all__ = ["ConfigDiff", "NamedDiff", "diff_configs", "diff_named"]

V = TypeVar("V")

#: Sections read once at start; a change there needs `systemctl restart keeptime`.
RESTART_SECTIONS = ("engine", "python", "http", "log", "queues")


@dataclass(frozen=True)
class NamedDiff:
    """Names added, changed and removed between two ``{name: item}`` tables, each sorted."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


@dataclass(frozen=True)
class ConfigDiff:
    schedules: NamedDiff
    debouncers: NamedDiff
    #: Sections that differ but only take effect after a restart.
    restart_needed: tuple[str, ...]

    def summary(self) -> dict[str, list[str]]:
        """The non-empty parts, for a log line: ``{"schedules_added": [...], ...}``."""
        out: dict[str, list[str]] = {}
        for kind, diff in (("schedules", self.schedules), ("debouncers", self.debouncers)):
            for part in ("added", "changed", "removed"):
                names = getattr(diff, part)
                if names:
                    out[f"{kind}_{part}"] = list(names)
        if self.restart_needed:
            out["restart_needed"] = list(self.restart_needed)
        return out


def diff_named(old: Mapping[str, V], new: Mapping[str, V]) -> NamedDiff:
    """Compare two tables of named items by name and by value."""
    return NamedDiff(
        added=tuple(sorted(set(new) - set(old))),
        changed=tuple(sorted(n for n in set(old) & set(new) if old[n] != new[n])),
        removed=tuple(sorted(set(old) - set(new))),
    )


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """The differences a SIGHUP reload applies (or reports as needing a restart)."""
    names = {f.name for f in fields(Config)}
    restart = tuple(
        section
        for section in RESTART_SECTIONS
        if section in names and getattr(old, section) != getattr(new, section)
    )
    return ConfigDiff(
        schedules=diff_named(old.schedules, new.schedules),
        debouncers=diff_named(old.debouncers, new.debouncers),
        restart_needed=restart,
    )
