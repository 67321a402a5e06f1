"""``keeptime run``: the daemon's life from start to a graceful stop.

Start: configure the engine from ``[engine]``, create the queues, register the command and
webhook targets, launch, apply schedules and debouncers to the engine's registry by name, start
the HTTP API, then tell systemd ``READY=1``. Signals arrive through a wake-up pipe, so handlers
do nothing but wake the main loop: SIGTERM/SIGINT stop, SIGHUP reloads the config.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from daemon.config import load_config
from daemon.config_check import read_token
from daemon.config_diff import diff_configs
from daemon.config_model import Config, ConfigInvalid
from daemon.engine_setup import (
    create_queues,
    dbos_config,
    register_debouncer_targets,
    register_schedule_targets,
)
from daemon.logging import get_logger
from daemon.notify import Notifier, watchdog_interval
from daemon.orphans import (
    OrphanScanner,
    cancel_removed_schedule_work,
    cancel_unrecoverable,
    managed_schedule_workflows,
    warn_other_versions,
)
from daemon.registry_sync import RegistrySync
from daemon.targets import stop_commands
from engine import DBOS
from engine.error import DBOSException

__all__ = ["STOP_TIMEOUT_SECONDS", "Service"]

#: The longest a graceful stop may take; in-flight work left then is recovered at next start.
STOP_TIMEOUT_SECONDS = 20.0
_IDLE_WAKE_SECONDS = 30.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = get_logger("keeptime.daemon")


class Service:
    """One run of the daemon on one config file."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier()
        self.sync = RegistrySync()
        self.orphans = OrphanScanner()
        self.api: Any = None
        self.ready = threading.Event()
        self._signals_in, self._signals_out = socket.socketpair()
        self._watchdog_stop = threading.Event()
        self.stopped_cleanly = True

    # -- the main loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop. Returns the process exit code."""
        previous = self._install_signal_handlers()
        self._start_watchdog()
        try:
            self._notify(self.notifier.status, "starting")
            self.start()
            self._serve()
        finally:
            self.stop()
            self._restore_signal_handlers(previous)
        return 0

    def _serve(self) -> None:
        self._notify(self.notifier.ready, self._status_line())
        self.ready.set()
        log.info("daemon.ready", **self._counts(), pid=os.getpid())
        while True:
            for signum in self._wait_for_signals(_IDLE_WAKE_SECONDS):
                if signum in _STOP_SIGNALS:
                    log.info("daemon.stopping", signal=signal.Signals(signum).name)
                    return
                if signum == signal.SIGHUP:
                    self.reload()

    def _wait_for_signals(self, timeout: float) -> list[int]:
        readable, _, _ = select.select([self._signals_in], [], [], timeout)
        if not readable:
            return []
        try:
            return list(self._signals_in.recv(64))
        except BlockingIOError:
            return []

    def _install_signal_handlers(self) -> dict[int, Any]:
        self._signals_in.setblocking(False)
        self._signals_out.setblocking(False)
        signal.set_wakeup_fd(self._signals_out.fileno(), warn_on_full_buffer=False)
        previous: dict[int, Any] = {}
        for signum in (*_STOP_SIGNALS, signal.SIGHUP):
            # The wake-up fd carries the signal number; the Python-level handler does nothing.
            previous[signum] = signal.signal(signum, _ignore_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(-1)
        self._signals_in.close()
        self._signals_out.close()

    # -- start and stop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Launch the engine with this config, apply schedules, start the HTTP API."""
        config = self.config
        log.info(
            "daemon.starting",
            config=str(config.source_path),
            database=_masked_url(config.engine.database_url),
            executor_id=config.engine.executor_id,
        )
        DBOS(config=dbos_config(config))
        create_queues(config)
        schedule_workflows = register_schedule_targets(config.schedules)
        debouncer_workflows = register_debouncer_targets(config.debouncers)
        DBOS.launch()
        DBOS.add_outcome_listener(_log_outcome)
        # Recovery resumed what it could; what it left for want of code is resolved before
        # any tick is decided (an overlap policy would count it as running).
        _resolving(cancel_unrecoverable)
        before = _resolving(managed_schedule_workflows) or {}
        self.sync.apply(config, schedule_workflows, debouncer_workflows)
        _resolving(lambda: cancel_removed_schedule_work(before, config))
        self.orphans.start()
        self.api = _start_http_api(self)
        _resolving(lambda: warn_other_versions(config, _api_base(config, self.api)))

    def stop(self) -> None:
        """Stop the API and the engine within :data:`STOP_TIMEOUT_SECONDS`."""
        self._notify(self.notifier.stopping, "stopping")
        self.ready.clear()
        started = time.monotonic()
        stopper = threading.Thread(target=self._stop_components, name="keeptime-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT_SECONDS)
        self._watchdog_stop.set()
        elapsed = round(time.monotonic() - started, 3)
        if stopper.is_alive():
            self.stopped_cleanly = False
            log.warning(
                "daemon.stop_timeout",
                seconds=STOP_TIMEOUT_SECONDS,
                hint="work still in flight is recovered at the next start",
            )
            return
        log.info("daemon.stopped", seconds=elapsed)

    def _stop_components(self) -> None:
        self.orphans.stop()
        if self.api is not None:
            try:
                self.api.stop()
            except Exception:
                log.exception("http.stop_failed")
        DBOS.destroy()
        # After the engine stopped: a command step that fails now is not recorded (its
        # workflow stays PENDING and runs it again at the next start).
        stop_commands()

    # -- reload -----------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Apply a changed config file (SIGHUP). A bad file is rejected; the old config stays."""
        self._notify(self.notifier.reloading, "reloading the config")
        path = self.config.source_path
        try:
            new = load_config(path)
            diff = diff_configs(self.config, new)
            create_queues(new)
            schedule_workflows = register_schedule_targets(new.schedules)
            debouncer_workflows = register_debouncer_targets(new.debouncers)
            before = _resolving(managed_schedule_workflows) or {}
            self.sync.apply(new, schedule_workflows, debouncer_workflows)
        except ConfigInvalid as exc:
            problems = [str(p) for p in exc.problems]
            log.error("config.rejected", config=str(path), problems=problems)
            self._notify(self.notifier.ready, "config rejected; still running the previous one")
            return False
        except DBOSException as exc:
            log.error("config.rejected", config=str(path), problems=[str(exc)])
            self._notify(self.notifier.ready, "config rejected; still running the previous one")
            return False
        self.config = new
        _resolving(lambda: cancel_removed_schedule_work(before, new))
        if diff.restart_needed:
            log.warning(
                "config.restart_needed",
                sections=list(diff.restart_needed),
                hint="these sections take effect after `systemctl restart keeptime`",
            )
        log.info("config.reloaded", config=str(path), **diff.summary(), **self._counts())
        self._notify(self.notifier.ready, self._status_line())
        return True

    # -- systemd ----------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None or not self.notifier.enabled:
            return

        def ping() -> None:
            while not self._watchdog_stop.wait(interval):
                self._notify(self.notifier.watchdog)

        threading.Thread(target=ping, name="keeptime-watchdog", daemon=True).start()
        log.info("watchdog.enabled", interval_seconds=interval)

    def _notify(self, send: Callable[..., bool], *args: str) -> None:
        try:
            send(*args)
        except OSError as exc:
            log.warning("notify.failed", error=str(exc), socket=os.environ.get("NOTIFY_SOCKET"))

    def _counts(self) -> dict[str, int]:
        return {
            "schedules": len(self.config.schedules),
            "debouncers": len(self.config.debouncers),
        }

    def _status_line(self) -> str:
        counts = self._counts()
        return f"running: {counts['schedules']} schedules, {counts['debouncers']} debouncers"


T = TypeVar("T")


def _resolving(action: Callable[[], T]) -> T | None:
    """Run one of the start's or reload's checks for orphaned work; a failure (the database
    did not answer) is logged, not fatal: the periodic scan and the next start try again."""
    try:
        return action()
    except DBOSException as exc:
        log.warning("orphans.scan_failed", error=f"{type(exc).__name__}: {exc}")
        return None


def _log_outcome(workflow_id: str, name: str, status: str, error: BaseException | None) -> None:
    if error is None:
        log.info("workflow.completed", workflow_id=workflow_id, workflow=name, status=status)
    else:
        log.warning(
            "workflow.failed",
            workflow_id=workflow_id,
            workflow=name,
            status=status,
            error=f"{type(error).__name__}: {error}",
        )


def _ignore_signal(signum: int, frame: object) -> None:
    """Signals are read from the wake-up fd by the main loop."""


def _masked_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _api_base(config: Config, api: Any) -> str | None:
    """The HTTP API's base URL as clients on this host reach it (for hints in the logs)."""
    address = getattr(api, "address", None)
    if not address:
        return None
    host = config.http.listen.rsplit(":", 1)[0].strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{address[1]}"


def _start_http_api(service: Service) -> Any:
    """Serve the HTTP API (``daemon.api``); it follows the config through reloads."""
    api = importlib.import_module("daemon.api")
    handle = api.start_api(
        lambda: service.config,
        token=read_token(service.config),
        readiness=service.sync.schedules_loaded.is_set,
    )
    log.info("http.listening", listen=service.config.http.listen)
    return handle
