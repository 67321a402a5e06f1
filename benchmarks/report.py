"""Medians over runs, targets from issue 8, and the markdown report."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from benchmarks.plan import Scenario
from benchmarks.runner import Outcome

Key = tuple[str, str, str]  # (scenario, backend, peer label)


@dataclass(frozen=True)
class Target:
    scenario: str
    metric: str
    backend: str | None  # None: both
    kind: str  # "ratio>=" (ours/ref), "floor>=" (ours/floor), "<=", "<", "=="
    bound: float

    def applies(self, scenario: str, metric: str, backend: str) -> bool:
        same = self.scenario == scenario and self.metric == metric
        return same and self.backend in (None, backend)

    def describe(self) -> str:
        if self.kind == "ratio>=":
            return f"≥{self.bound:g}x ref"
        if self.kind == "floor>=":
            return f"≥{self.bound:g} of floor"
        return f"{self.kind}{self.bound:g}"

    def met(self, ours: float, ratio: float | None, floor: float | None) -> bool | None:
        if self.kind == "ratio>=":
            return None if ratio is None else ratio >= self.bound
        if self.kind == "floor>=":
            return None if floor is None else floor >= self.bound
        if self.kind == "<=":
            return ours <= self.bound
        if self.kind == "<":
            return ours < self.bound
        return ours == self.bound


TARGETS = (
    Target("steps", "workflows/s", "sqlite", "ratio>=", 6),
    Target("steps", "workflows/s", "postgres", "ratio>=", 2.5),
    Target("steps", "workflows/s", None, "floor>=", 0.5),
    Target("queues", "drain/s (backlog)", None, "ratio>=", 10),
    Target("messaging", "send→recv p50", None, "<=", 2),
    Target("messaging", "set_event→get_event p50", None, "<=", 2),
    Target("debounce", "calls/s, 1 key", None, "ratio>=", 3),
    Target("debounce", "calls/s, 1000 keys", None, "ratio>=", 3),
    Target("schedules-1000", "lateness p99", None, "<", 100),
    Target("schedules-1000", "missed ticks", None, "==", 0),
    Target("schedules-1000", "duplicate ticks", None, "==", 0),
    Target("schedules-1000", "threads (max)", None, "<=", 10),
    # 200 MB (decimal, as the issue writes it) in MiB, the unit RSS is reported in.
    Target("schedules-10k-minutely", "RSS (peak)", None, "<", 190.7),
    Target("schedules-10k-minutely", "missed ticks", None, "==", 0),
    Target("schedules-10k-minutely", "duplicate ticks", None, "==", 0),
)


@dataclass
class Summary:
    values: dict[str, float | None]
    units: dict[str, str]
    runs: int
    error: str | None
    notes: list[str]


def summarize(outcomes: list[Outcome]) -> Summary:
    good = [o for o in outcomes if o.error is None]
    if not good:
        reason = outcomes[0].error if outcomes else "not run"
        return Summary({}, {}, 0, reason, [])
    values: dict[str, float | None] = {}
    for name in good[0].metrics:
        samples = [o.metrics[name] for o in good if o.metrics.get(name) is not None]
        values[name] = statistics.median(samples) if samples else None  # type: ignore[type-var]
    notes = list(dict.fromkeys(n for o in good for n in o.notes))[:4]  # distinct, in order
    return Summary(values, good[0].units, len(good), None, notes)


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(ours: float | None, ref: float | None) -> float | None:
    if ours is None or ref is None or ref == 0:
        return None
    return ours / ref


class Report:
    def __init__(self, results: dict[Key, list[Outcome]], backends: tuple[str, ...]) -> None:
        self.summaries = {key: summarize(runs) for key, runs in results.items()}
        self.backends = backends
        self.misses: list[str] = []

    def get(self, scenario: str, backend: str, label: str) -> Summary | None:
        return self.summaries.get((scenario, backend, label))

    def main_table(self, scenarios: list[Scenario]) -> list[str]:
        lines = [
            "| scenario | metric | backend | ours | reference | ours/ref | ours/floor | target |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for scenario in scenarios:
            for backend in self.backends:
                lines += self._rows(scenario.name, backend)
        return lines

    def _rows(self, scenario: str, backend: str) -> list[str]:
        ours = self.get(scenario, backend, "ours")
        ref = self.get(scenario, backend, "reference")  # None: an ours-only scenario
        if ours is None:
            return []
        floor = self.get(scenario, backend, _floor_label(backend))
        names = list(ours.values) or (list(ref.values) if ref else []) or ["(all metrics)"]
        rows = []
        for name in names:
            o = ours.values.get(name)
            r = ref.values.get(name) if ref else None
            unit = ours.units.get(name) or (ref.units.get(name) if ref else None) or ""
            f = floor.values.get(name) if floor else None
            to_floor = ratio(o, f) if name == "workflows/s" else None
            ref_cell = _cell(r, ref) if ref else "—"
            rows.append(
                f"| {scenario} | {name} ({unit}) | {backend} | {_cell(o, ours)} | {ref_cell} "
                f"| {fmt(ratio(o, r))} | {fmt(to_floor) if to_floor else ''} "
                f"| {self._target(scenario, name, backend, o, ratio(o, r), to_floor)} |"
            )
        return rows

    def _target(
        self,
        scenario: str,
        metric: str,
        backend: str,
        ours: float | None,
        to_ref: float | None,
        to_floor: float | None,
    ) -> str:
        cells = []
        for target in TARGETS:
            if not target.applies(scenario, metric, backend):
                continue
            met = None if ours is None else target.met(ours, to_ref, to_floor)
            verdict = {True: "met", False: "**missed**", None: "n/a"}[met]
            cells.append(f"{target.describe()}: {verdict}")
            if met is False:
                self.misses.append(
                    f"{scenario} / {metric} / {backend}: {target.describe()}, got ours "
                    f"{fmt(ours)}, ours/ref {fmt(to_ref)}, ours/floor {fmt(to_floor)}"
                )
        return "; ".join(cells)

    def floor_table(self) -> list[str]:
        lines = [
            "| backend | floor mode | commits/s | workflows/s (5 commits each) | ours/floor "
            "| reference/floor |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for backend in self.backends:
            ours = self.get("steps", backend, "ours")
            ref = self.get("steps", backend, "reference")
            for (scenario, b, label), summary in self.summaries.items():
                if scenario != "steps" or b != backend or not label.startswith("floor"):
                    continue
                wf = summary.values.get("workflows/s")
                o = ours.values.get("workflows/s") if ours else None
                r = ref.values.get("workflows/s") if ref else None
                lines.append(
                    f"| {backend} | {label.removeprefix('floor: ')} "
                    f"| {_cell(summary.values.get('commits/s'), summary)} | {fmt(wf)} "
                    f"| {fmt(ratio(o, wf))} | {fmt(ratio(r, wf))} |"
                )
        return lines

    def schedules_table(self, scenarios: list[Scenario]) -> list[str]:
        cols = ["lateness p50", "lateness p99", "missed ticks", "duplicate ticks"]
        cols += ["threads (max)", "RSS (max)", "CPU"]
        lines = [
            "| schedules | backend | peer | p50 late (ms) | p99 late (ms) | missed | duplicates "
            "| threads | RSS (MiB) | CPU (% core) |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for scenario in scenarios:
            if not scenario.name.startswith("schedules-"):
                continue
            for backend in self.backends:
                for label in ("ours", "reference", "APScheduler 3"):
                    s = self.get(scenario.name, backend, label)
                    if s is None:
                        continue
                    cells = [_cell(s.values.get(c), s) for c in cols]
                    lines.append(
                        f"| {scenario.full.size} | {backend} | {label} | {' | '.join(cells)} |"
                    )
        return lines

    def notes(self) -> list[str]:
        out = []
        for (scenario, backend, label), s in sorted(self.summaries.items()):
            if s.error:
                out.append(f"- {scenario} / {backend} / {label}: n/a, {s.error}")
            for note in s.notes[:2]:
                out.append(f"- {scenario} / {backend} / {label}: {note}")
        return out


def _floor_label(backend: str) -> str:
    if backend == "postgres":
        return "floor: psycopg autocommit"
    return "floor: sqlite3 WAL, synchronous=FULL"


def _cell(value: float | None, summary: Summary) -> str:
    if summary.error:
        return "n/a"
    return fmt(value)
