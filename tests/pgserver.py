"""A throwaway PostgreSQL server for the test session (initdb + pg_ctl, no mocks).

When the tests run as root, the server runs as the ``postgres`` OS user, since PostgreSQL refuses
to run as root. The binaries come from PATH or Debian's /usr/lib/postgresql/<v>/bin;
``scripts/test.sh`` installs them with apt-get when they are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def _find_bin(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    return shutil.which(name)


# Test servers listen below Linux's ephemeral range (32768+): a server stopped for a long
# outage would otherwise find its port taken by some client's outgoing connection.
_PORT_RANGE = (15432, 32000)


def free_port() -> int:
    """A free TCP port on loopback below the ephemeral range."""
    first, last = _PORT_RANGE
    start = random.randrange(first, last)
    for offset in range(last - first):
        port = first + (start - first + offset) % (last - first)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}..{last}")


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    run_as_postgres: bool
    pg_ctl: str

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _command(self, argv: Sequence[str]) -> list[str]:
        cmd = list(argv)
        if self.run_as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _run(self, argv: Sequence[str]) -> None:
        subprocess.run(
            self._command(argv), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self) -> None:
        """Stop for good and delete the data directory (end of the test session)."""
        try:
            if self.running():  # a test that failed mid-outage may have left it down
                self.halt("immediate")
        finally:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def running(self) -> bool:
        """Whether the server runs (``pg_ctl status``)."""
        status = subprocess.run(
            self._command([self.pg_ctl, "-D", str(self.data_dir), "status"]),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def halt(self, mode: str = "fast") -> None:
        """Stop the server (``fast``, ``immediate`` or ``smart``), keeping its data: an outage."""
        self._run([self.pg_ctl, "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def start(self) -> None:
        """Start the server again after :meth:`halt`, on the same port."""
        options = (
            f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c fsync=on"
        )
        self._run(
            [
                self.pg_ctl,
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.data_dir / "log"),
                "-w",
                "start",
            ]
        )
        _wait_ready(self.port)

    def restart(self, mode: str = "fast") -> None:
        self.halt(mode)
        self.start()


def start_postgres() -> PostgresServer:
    initdb = _find_bin("initdb")
    pg_ctl = _find_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; "
            "install them with `apt-get install postgresql` or run scripts/test.sh"
        )
    root = Path(tempfile.mkdtemp(prefix="keeptime-pg-"))
    data_dir = root / "data"
    run_as_postgres = os.geteuid() == 0
    if run_as_postgres:
        pw = pwd.getpwnam("postgres")
        os.chmod(root, 0o755)
        data_dir.mkdir()
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
    port = free_port()
    server = PostgresServer(data_dir, port, run_as_postgres, pg_ctl)
    server._run([initdb, "-D", str(data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8"])
    server.start()
    return server


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"PostgreSQL did not start listening on port {port}")
