"""Serializers for values stored in the system database, and the codec built on them.

The default serializer is pickle + base64, as the spec says. ``JsonSerializer`` is built in for
deployments that must never unpickle (the daemon uses it). Errors get a serializer-independent
envelope so they can be re-raised with their original type even under JSON.
"""

from __future__ import annotations

import base64
import importlib
import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.error import DBOSException, DBOSSerializationError


class Serializer(ABC):
    """Turns values into strings for the system database and back."""

    @abstractmethod
    def serialize(self, data: Any) -> str:
        """Turn ``data`` into a string; raise if it cannot (the engine names the value)."""

    @abstractmethod
    def deserialize(self, serialized_data: str) -> Any:
        """Rebuild the value that ``serialize`` wrote."""


class PickleSerializer(Serializer):
    """pickle, then base64 (the spec's default). Only for databases you trust."""

    def serialize(self, data: Any) -> str:
        """The base64 text of ``data`` pickled with the highest protocol."""
        return base64.b64encode(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)).decode()

    def deserialize(self, serialized_data: str) -> Any:
        """Unpickle: this runs code chosen by whoever wrote the string."""
        return pickle.loads(base64.b64decode(serialized_data))


class JsonSerializer(Serializer):
    """Plain JSON: values must be JSON types. Never executes code when reading.

    Aware and naive ``datetime`` values are also accepted (scheduled workflows receive two), stored
    as ``{"__datetime__": "<ISO 8601>"}``.
    """

    def serialize(self, data: Any) -> str:
        """Compact JSON; NaN and infinities are refused, datetimes tagged."""
        return json.dumps(data, separators=(",", ":"), allow_nan=False, default=_json_default)

    def deserialize(self, serialized_data: str) -> Any:
        """Parse JSON, turning tagged datetimes back into ``datetime`` values."""
        return json.loads(serialized_data, object_hook=_json_object_hook)


_DATETIME_TAG = "__datetime__"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_DATETIME_TAG: value.isoformat()}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and isinstance(obj.get(_DATETIME_TAG), str):
        return datetime.fromisoformat(obj[_DATETIME_TAG])
    return obj


class Codec:
    """Encodes workflow inputs, outputs and errors with one serializer, naming what failed."""

    def __init__(self, serializer: Serializer) -> None:
        self.serializer = serializer

    def encode(self, value: Any, what: str) -> str:
        """Serialize ``value``; DBOSSerializationError names ``what`` failed."""
        try:
            return self.serializer.serialize(value)
        except Exception as exc:
            raise DBOSSerializationError(
                f"cannot serialize {what}: {type(exc).__name__}: {exc} "
                f"(pass only values the configured serializer "
                f"({type(self.serializer).__name__}) supports)"
            ) from exc

    def decode(self, text: str | None, what: str) -> Any:
        """Deserialize ``text`` (None stays None); DBOSSerializationError names ``what`` failed."""
        if text is None:
            return None
        try:
            return self.serializer.deserialize(text)
        except Exception as exc:
            raise DBOSSerializationError(
                f"cannot deserialize {what}: {type(exc).__name__}: {exc} "
                "(was it written with a different serializer?)"
            ) from exc

    def encode_inputs(
        self, workflow_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> str:
        """Serialize a workflow's arguments; on failure, DBOSSerializationError names the first
        argument that cannot be serialized."""
        try:
            return self.serializer.serialize({"args": list(args), "kwargs": dict(kwargs)})
        except Exception:
            pass
        for index, arg in enumerate(args):
            self.encode(arg, f"argument {index} of workflow '{workflow_name}'")
        for key, arg in kwargs.items():
            self.encode(arg, f"argument '{key}' of workflow '{workflow_name}'")
        return self.encode(
            {"args": list(args), "kwargs": dict(kwargs)},
            f"the inputs of workflow '{workflow_name}'",
        )

    def decode_inputs(self, text: str | None) -> dict[str, Any]:
        """A workflow's ``{"args": tuple, "kwargs": dict}``; empty ones if the stored value is not a
        dict."""
        value = self.decode(text, "workflow inputs")
        if not isinstance(value, dict):
            return {"args": [], "kwargs": {}}
        return {"args": tuple(value.get("args", ())), "kwargs": dict(value.get("kwargs", {}))}

    def encode_error(self, exc: BaseException) -> str:
        """A JSON envelope of ``exc`` (type, message, args), plus its pickle under
        ``PickleSerializer``, so it can be rebuilt under any serializer."""
        envelope: dict[str, Any] = {
            "type": f"{type(exc).__module__}:{type(exc).__qualname__}",
            "message": str(exc),
            "args": _jsonable_args(exc),
        }
        if isinstance(self.serializer, PickleSerializer):
            try:
                envelope["pickle"] = self.serializer.serialize(exc)
            except Exception:
                envelope["pickle"] = None
        return json.dumps(envelope)

    def decode_error(self, text: str | None) -> BaseException | None:
        """The exception an envelope records: unpickled under ``PickleSerializer``, else rebuilt
        from its type name and message without running pickled code."""
        if text is None:
            return None
        envelope = json.loads(text)
        if envelope.get("pickle") and isinstance(self.serializer, PickleSerializer):
            try:
                err = self.serializer.deserialize(envelope["pickle"])
                if isinstance(err, BaseException):
                    return err
            except Exception:
                pass
        return _rebuild_error(envelope)


def _jsonable_args(exc: BaseException) -> list[Any]:
    try:
        json.dumps(list(exc.args))
        return list(exc.args)
    except (TypeError, ValueError):
        return [str(exc)]


def _rebuild_error(envelope: Mapping[str, Any]) -> BaseException:
    """Recreate an exception of the recorded type without unpickling anything."""
    module_name, _, qualname = str(envelope.get("type", "")).partition(":")
    message = str(envelope.get("message", ""))
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            if issubclass(obj, DBOSException):
                err = obj.__new__(obj)
                DBOSException.__init__(err, message)
                return err
            return obj(*envelope.get("args", [message]))
    except Exception:
        pass
    return DBOSException(f"{qualname or 'Exception'}: {message}")
