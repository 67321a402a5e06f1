"""The queue every executor serves: work handed over by DBOSClient (resume, fork).

``engine.queue`` declares it (a ``Queue`` like any other); the runtime only needs its name.
"""

from __future__ import annotations

INTERNAL_QUEUE_NAME = "_keeptime_internal"
