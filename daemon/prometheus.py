"""A tiny Prometheus registry: counters, gauges and histograms rendered in text format 0.0.4.

Small on purpose (the daemon needs five metric families, and no new dependency for them).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[str, ...]


@dataclass
class _Family:
    name: str
    help: str
    kind: str
    label_names: Labels

    def header(self) -> list[str]:
        text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        return [f"# HELP {self.name} {text}", f"# TYPE {self.name} {self.kind}"]

    def labels_text(self, values: Labels, extra: Mapping[str, str] | None = None) -> str:
        pairs = list(zip(self.label_names, values, strict=True)) + list((extra or {}).items())
        if not pairs:
            return ""
        return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs) + "}"


class Counter(_Family):
    def __init__(self, name: str, help: str, label_names: Labels = ()) -> None:
        super().__init__(name, help, "counter", label_names)
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: Labels = ()) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [
            f"{self.name}{self.labels_text(k)} {format_value(v)}" for k, v in items
        ]


class Gauge(_Family):
    """A gauge whose samples are replaced as a whole at each collection."""

    def __init__(self, name: str, help: str, label_names: Labels = ()) -> None:
        super().__init__(name, help, "gauge", label_names)
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def set(self, labels: Labels, value: float) -> None:
        with self._lock:
            self._values[labels] = value

    def replace(self, values: Mapping[Labels, float]) -> None:
        with self._lock:
            self._values = dict(values)

    def get(self, labels: Labels) -> float | None:
        with self._lock:
            return self._values.get(labels)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [
            f"{self.name}{self.labels_text(k)} {format_value(v)}" for k, v in items
        ]


class Histogram(_Family):
    def __init__(
        self, name: str, help: str, buckets: Sequence[float], label_names: Labels = ()
    ) -> None:
        super().__init__(name, help, "histogram", label_names)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def observe(self, labels: Labels, value: float) -> None:
        with self._lock:
            counts = self._counts.setdefault(labels, [0] * (len(self.buckets) + 1))
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[index] += 1
            counts[-1] += 1  # +Inf
            self._sums[labels] = self._sums.get(labels, 0.0) + value

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        lines = self.header()
        for labels, counts, total in items:
            for bound, count in zip([*self.buckets, math.inf], counts, strict=True):
                le = self.labels_text(labels, {"le": format_value(bound)})
                lines.append(f"{self.name}_bucket{le} {count}")
            lines.append(f"{self.name}_sum{self.labels_text(labels)} {format_value(total)}")
            lines.append(f"{self.name}_count{self.labels_text(labels)} {counts[-1]}")
        return lines


Family = Counter | Gauge | Histogram


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines += family.render()
    return "\n".join(lines) + "\n"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
