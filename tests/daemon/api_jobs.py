"""Workflows the daemon API tests configure as debouncer targets."""

from __future__ import annotations

from typing import Any

from engine import DBOS


@DBOS.workflow()
def api_reindex(value: Any) -> Any:
    return {"indexed": value}
