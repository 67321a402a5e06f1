"""Keeptime's durable workflow engine: the DBOS API on SQLite and PostgreSQL."""

from engine import error
from engine.client import DBOSClient, EnqueueOptions
from engine.config import DBOSConfig
from engine.dbos import DBOS, DBOSConfiguredInstance
from engine.debouncer import Debouncer, DebouncerClient
from engine.handles import WorkflowHandle, WorkflowHandleAsync
from engine.queue import Queue
from engine.runtime.context import SetEnqueueOptions, SetWorkflowID, SetWorkflowTimeout
from engine.serialization import JsonSerializer, PickleSerializer, Serializer
from engine.status import StepInfo, WorkflowStatus, WorkflowStatusString

# The public API, pinned by tests/engine/test_public_api.py: changing it is an API change.
__all__ = [
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
    "Serializer",
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowStatus",
    "WorkflowStatusString",
    "error",
]
