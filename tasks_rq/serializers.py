"""Turn task arguments and results into bytes for Redis and back.

``json`` (the default) carries what JSON carries (``None``, ``bool``, ``int``, ``float``,
``str``, lists and dicts with string keys; tuples come back as lists) plus ``datetime``,
``date``, ``time``, ``UUID``, ``Decimal`` and ``bytes``, tagged so they come back with their
type. ``pickle`` carries any picklable object; it is an explicit opt-in because unpickling
runs code chosen by whoever can write to Redis.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import pickle
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from tasks_rq.errors import SerializationError

_TAG = "__trq__"


class Serializer(Protocol):
    """What a serializer provides."""

    name: str

    def dumps(self, value: Any) -> str:
        """Return ``value`` encoded as text, or raise ``SerializationError``."""
        ...

    def loads(self, data: str) -> Any:
        """Return the value encoded in ``data``."""
        ...


def _encode_extra(value: Any) -> dict[str, str]:
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"a value of type {type(value).__name__} is not JSON serializable")


_DECODERS: dict[str, Callable[[str], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "bytes": lambda text: base64.b64decode(text.encode("ascii")),
}


def _decode_extra(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None or len(obj) != 2:
        return obj
    return _DECODERS[tag](obj["v"])


def _check_keys(value: Any) -> None:
    # JSON turns every dict key into a string ({1: "a"} comes back as {"1": "a"}): refuse
    # rather than change the data.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"dict key {key!r} is a {type(key).__name__}, not a str; JSON would "
                    "turn it into a string"
                )
            _check_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_keys(item)


class JSONSerializer:
    """JSON with tags for datetime, date, time, UUID, Decimal and bytes."""

    name = "json"

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            default=_encode_extra, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )

    def dumps(self, value: Any) -> str:
        """Return ``value`` as JSON text."""
        try:
            _check_keys(value)
            return self._encoder.encode(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(str(exc)) from exc

    def loads(self, data: str) -> Any:
        """Return the value of JSON text ``data``."""
        return json.loads(data, object_hook=_decode_extra)


class PickleSerializer:
    """Pickle, base64-encoded. Only for data from sources you trust."""

    name = "pickle"

    def dumps(self, value: Any) -> str:
        """Return ``value`` pickled and base64-encoded."""
        try:
            return base64.b64encode(pickle.dumps(value, protocol=5)).decode("ascii")
        except Exception as exc:
            raise SerializationError(f"cannot pickle: {exc}") from exc

    def loads(self, data: str) -> Any:
        """Return the value pickled in ``data``."""
        return pickle.loads(base64.b64decode(data))


SERIALIZERS: dict[str, Serializer] = {"json": JSONSerializer(), "pickle": PickleSerializer()}


def get(name: str) -> Serializer:
    """Return the serializer called ``name``.

    Raises:
        ValueError: no serializer has that name.
    """
    try:
        return SERIALIZERS[name]
    except KeyError:
        known = ", ".join(sorted(SERIALIZERS))
        raise ValueError(f"unknown serializer {name!r}; known: {known}") from None


def explain_failure(
    serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any], names: list[str]
) -> str:
    """Return which argument ``serializer`` cannot carry and why, for an error message."""
    for index, value in enumerate(args):
        label = names[index] if index < len(names) else f"#{index}"
        problem = _problem(serializer, value)
        if problem:
            return f"argument {label!r} ({type(value).__name__}): {problem}"
    for key, value in kwargs.items():
        problem = _problem(serializer, value)
        if problem:
            return f"argument {key!r} ({type(value).__name__}): {problem}"
    return "the arguments cannot be serialized"


def _problem(serializer: Serializer, value: Any) -> str:
    try:
        serializer.dumps(value)
    except SerializationError as exc:
        return str(exc)
    return ""
