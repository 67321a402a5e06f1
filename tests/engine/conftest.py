"""Engine fixtures: a launched DBOS on a fresh database of each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine import DBOS


@pytest.fixture()
def launch(db_url: str) -> Iterator[Callable[..., None]]:
    """Configure and launch DBOS on this test's database; extra config keys may be passed."""

    def _launch(**extra: Any) -> None:
        DBOS.destroy()
        DBOS(config={"name": "test-app", "system_database_url": db_url, **extra})
        DBOS.launch()

    yield _launch
    DBOS.destroy()


@pytest.fixture()
def dbos(launch: Callable[..., None]) -> None:
    launch()
