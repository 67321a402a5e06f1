"""``keeptime workflows`` and application versions: list by version, resume and fork across them."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.cli import main
from engine import DBOSClient, EnqueueOptions, JsonSerializer

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    def _run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture()
def config(db_url: str, tmp_path: Path) -> Iterator[Path]:
    """A config without ``application_version`` (the daemon runs "keeptime"), and two runs
    waiting on queue ``q``: one of version v1, one of "keeptime"."""
    path = tmp_path / "keeptime.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [engine]
            database_url = "{db_url}"
            [queues.q]
            concurrency = 1
            """
        )
    )
    client = DBOSClient(system_database_url=db_url, serializer=JsonSerializer())
    try:
        for workflow_id, version in (("old-run", "v1"), ("new-run", "keeptime")):
            options: EnqueueOptions = {
                "queue_name": "q",
                "workflow_name": "some_workflow",
                "workflow_id": workflow_id,
                "app_version": version,
            }
            client.enqueue(options, 1)
    finally:
        client.destroy()
    yield path


def test_list_filters_by_application_version(cli: Run, config: Path) -> None:
    c = str(config)
    code, out, err = cli("workflows", "list", "-c", c, "--app-version", "v1", "-o", "json")
    assert code == 0, err
    assert [(r["workflow_id"], r["app_version"]) for r in json.loads(out)] == [("old-run", "v1")]
    # With --queue too (that listing has no version filter of its own).
    code, out, _ = cli(
        "workflows", "list", "-c", c, "--queue", "q", "--app-version", "keeptime", "-o", "json"
    )
    assert [r["workflow_id"] for r in json.loads(out)] == ["new-run"]
    code, out, _ = cli("workflows", "list", "-c", c, "--app-version", "v9", "-o", "json")
    assert json.loads(out) == []


def test_resume_of_another_version_says_what_it_waits_for(cli: Run, config: Path) -> None:
    c = str(config)
    assert cli("workflows", "cancel", "-c", c, "old-run")[0] == 0
    code, out, err = cli("workflows", "resume", "-c", c, "old-run", "-o", "json")
    assert code == 0
    assert json.loads(out) == {
        "workflow_id": "old-run",
        "action": "resumed",
        "waits_for_app_version": "v1",
    }
    assert "waits for a daemon of that version" in err
    assert f"keeptime workflows fork -c {c} old-run --step 1 --app-version keeptime" in err
    # A run of this config's version resumes without a note.
    assert cli("workflows", "cancel", "-c", c, "new-run")[0] == 0
    code, out, err = cli("workflows", "resume", "-c", c, "new-run", "-o", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"workflow_id": "new-run", "action": "resumed"}


def test_fork_onto_another_version(cli: Run, config: Path, db_url: str) -> None:
    c = str(config)
    code, out, err = cli(
        "workflows", "fork", "-c", c, "old-run", "--app-version", "keeptime", "-o", "json"
    )
    assert code == 0, err
    record = json.loads(out)
    assert (record["forked_from"], record["app_version"]) == ("old-run", "keeptime")
    client = DBOSClient(system_database_url=db_url, serializer=JsonSerializer())
    try:
        forked = client.get_workflow_status(record["workflow_id"])
    finally:
        client.destroy()
    assert forked is not None
    assert (forked.status, forked.app_version) == ("ENQUEUED", "keeptime")


def test_resume_of_an_unknown_run_exits_1(cli: Run, config: Path) -> None:
    code, _, err = cli("workflows", "resume", "-c", str(config), "nope")
    assert code == 1
    assert "no workflow with ID 'nope'" in err
