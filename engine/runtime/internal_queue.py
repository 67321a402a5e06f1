"""The queue every executor serves: work handed over by DBOSClient (resume, fork)."""

from __future__ import annotations

from engine.queue import Queue

INTERNAL_QUEUE_NAME = "_keeptime_internal"
INTERNAL_QUEUE = Queue(INTERNAL_QUEUE_NAME)
