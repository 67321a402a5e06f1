"""Keeptime's durable workflow engine: the DBOS API on SQLite and PostgreSQL."""

from engine import error
from engine.client import DBOSClient, EnqueueOptions
from engine.config import DBOSConfig
from engine.core.cron import CronSchedule
from engine.dbos import DBOS, DBOSConfiguredInstance
from engine.debouncer import Debouncer, DebouncerClient
from engine.handles import WorkflowHandle, WorkflowHandleAsync
from engine.migrate import SchemaMigration, migrate_system_database_url
from engine.queue import Queue
from engine.runtime.context import SetEnqueueOptions, SetWorkflowID, SetWorkflowTimeout
from engine.schedules_api import WorkflowSchedule
from engine.serialization import JsonSerializer, PickleSerializer, Serializer
from engine.status import StepInfo, WorkflowStatus, WorkflowStatusString

# The public API, pinned by tests/engine/test_public_api.py: changing it is an API change.
__all__ = [  # noqa: RUF022 (plain alphabetical: the test pins it)
    "CronSchedule",
    "DBOS",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfiguredInstance",
    "Debouncer",
    "DebouncerClient",
    "EnqueueOptions",
    "JsonSerializer",
    "PickleSerializer",
    "Queue",
    "SchemaMigration",
    "Serializer",
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowSchedule",
    "WorkflowStatus",
    "WorkflowStatusString",
    "error",
    "migrate_system_database_url",
]
