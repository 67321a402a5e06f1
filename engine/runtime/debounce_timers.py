"""Which debounce windows this process already has a timer for (owned by the scheduler).

A call that moves a window's deadline later needs no timer of its own while the one armed
earlier is still pending: when that fires early, the scheduler re-arms it at the stored
deadline. Without this memo, every call on a hot key would add a timer, and each would cost a
write transaction when it fires.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ARMED_LIMIT", "DebounceTimers"]

#: Past this many remembered timers, the ones that fired are forgotten (then all of them).
ARMED_LIMIT = 10_000


class DebounceTimers:
    """The deadline of the timer last armed for each window, by the window's workflow ID."""

    def __init__(self, arm: Callable[[str, str, int], None]) -> None:
        self._arm = arm
        self._armed: dict[str, int] = {}

    def arm(self, namespace: str, key: str, workflow_id: str, fire_at_ms: int, now_ms: int) -> None:
        """Have the window fire at ``fire_at_ms`` (called after the call's commit)."""
        pending = self._armed.get(workflow_id)
        # A timer due at or before ``now`` may have fired already, and been re-armed for a
        # deadline later than this call's (a shorter period than the last call's): it does not
        # count.
        if pending is not None and now_ms < pending <= fire_at_ms:
            return
        self._arm(namespace, key, fire_at_ms)
        if len(self._armed) >= ARMED_LIMIT:
            self.forget_fired(now_ms)
        self._armed[workflow_id] = fire_at_ms

    def forget_fired(self, now_ms: int) -> None:
        """Drop the timers that already fired; forgetting one only costs a redundant timer."""
        for workflow_id, at in list(self._armed.items()):
            if at <= now_ms:
                self._armed.pop(workflow_id, None)
        if len(self._armed) >= ARMED_LIMIT:
            self._armed.clear()

    def remembered(self) -> dict[str, int]:
        """The remembered deadlines (a copy), for tests and diagnostics."""
        return dict(self._armed)
