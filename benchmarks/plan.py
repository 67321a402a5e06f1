"""What runs: scenarios, the peers each one compares, and their sizes in quick and full mode."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    label: str  # "ours", "reference", "APScheduler 3", "floor: ..."
    impl: str  # "ours" or "ref": which venv and which import line
    module: str
    phase: str = "drive"


@dataclass(frozen=True)
class Size:
    size: int
    seconds: float
    repeats: int


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str
    full: Size
    quick: Size | None  # None: skipped in quick mode
    timeout: float  # seconds for one run, both modes
    extra_peers: tuple[Peer, ...] = ()
    # Full mode: a longer window for ours alone (the peers' thousand threads would take the
    # whole budget), as long as the target asks for.
    ours_full_seconds: float | None = None
    ours_only: bool = False  # the peers have no counterpart (see the scenario's docstring)

    def size_for(self, peer: Peer, size: Size, quick: bool) -> Size:
        """This mode's ``size``, with ours' longer full-mode window where the scenario has one."""
        if peer.label == "ours" and not quick and self.ours_full_seconds is not None:
            return Size(size.size, self.ours_full_seconds, size.repeats)
        return size

    def peers(self, backend: str) -> list[Peer]:
        module = f"benchmarks.scenarios.{self.module}"
        if self.ours_only:
            return [Peer("ours", "ours", module)]
        peers = [Peer("ours", "ours", module), Peer("reference", "ref", module)]
        if self.name == "steps":
            peers += floor_peers(backend)
        return peers + list(self.extra_peers)


def floor_peers(backend: str) -> list[Peer]:
    module = "benchmarks.scenarios.floor"
    if backend == "postgres":
        return [Peer("floor: psycopg autocommit", "ours", module, "postgres")]
    return [
        Peer("floor: sqlite3 WAL, synchronous=FULL", "ours", module, "wal"),
        Peer("floor: sqlite3 rollback journal, synchronous=FULL", "ours", module, "rollback"),
    ]


APSCHEDULER = Peer("APScheduler 3", "ours", "benchmarks.scenarios.schedules_aps")


def _schedules(
    n: int, full_seconds: float, quick: Size | None, ours_full_seconds: float | None = None
) -> Scenario:
    return Scenario(
        name=f"schedules-{n}",
        module="schedules",
        full=Size(n, full_seconds, 1),
        quick=quick,
        timeout=120,
        extra_peers=(APSCHEDULER,),
        ours_full_seconds=ours_full_seconds,
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("steps", "steps", Size(2000, 6, 3), Size(300, 1.5, 1), timeout=60),
    Scenario("queues", "queues", Size(2000, 30, 2), Size(200, 10, 1), timeout=150),
    Scenario("messaging", "messaging", Size(200, 8, 3), Size(30, 1.5, 1), timeout=90),
    Scenario("debounce", "debounce", Size(1000, 0, 2), Size(100, 0, 1), timeout=150),
    _schedules(10, 5, None),
    _schedules(100, 5, Size(100, 2, 1)),
    _schedules(1000, 8, None, ours_full_seconds=60),  # the window: 60 s
    Scenario(
        "schedules-10k-minutely",
        "schedules_minutely",
        Size(10_000, 0, 1),
        None,
        timeout=90,
        ours_only=True,
    ),
    Scenario("recovery", "recovery", Size(500, 60, 2), Size(100, 30, 1), timeout=150),
    Scenario("launch", "launch", Size(1, 3, 3), Size(1, 1, 1), timeout=60),
)


def select(only: list[str] | None) -> list[Scenario]:
    if not only:
        return list(SCENARIOS)
    chosen = [s for s in SCENARIOS if s.name in only or s.module in only]
    unknown = set(only) - {s.name for s in chosen} - {s.module for s in chosen}
    if unknown:
        names = ", ".join(s.name for s in SCENARIOS)
        raise SystemExit(f"unknown scenario(s) {', '.join(sorted(unknown))} (known: {names})")
    return chosen
