"""The queues declared in this process, as the queue worker and the admin routes see them.

``engine.Queue`` (the public facade) declares itself here when created; the runtime reads only
this module, so it never imports the facade.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DECLARED", "DeclaredQueue", "DeclaredQueues", "QueueSpec"]


@dataclass(frozen=True)
class QueueSpec:
    """A queue's validated settings, as the queue worker reads them."""

    name: str
    concurrency: int | None
    worker_concurrency: int | None
    limit: int | None
    period_seconds: float | None
    priority_enabled: bool
    partition_queue: bool
    polling_interval_sec: float


class DeclaredQueue(Protocol):
    """A declared queue: its name and settings."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> QueueSpec: ...


class DeclaredQueues:
    """Queues by name; a second queue of a name replaces the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, DeclaredQueue] = {}

    def declare(self, queue: DeclaredQueue) -> None:
        with self._lock:
            self._queues[queue.name] = queue

    def all(self) -> list[DeclaredQueue]:
        with self._lock:
            return list(self._queues.values())

    def find(self, name: str) -> DeclaredQueue | None:
        with self._lock:
            return self._queues.get(name)


#: Process-wide, like the function registry: queues are declared at import time, once.
DECLARED = DeclaredQueues()
