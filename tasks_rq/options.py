"""Options of a task and of one job: repeat and retry policies, TTLs, timeouts, ids.

Everything is checked when the option is given, so a bad value fails at the call site with a
message naming the argument, before anything reaches Redis.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tasks_rq import keys, serializers

DEFAULT_QUEUE = "default"
DEFAULT_TIMEOUT_S = 180.0
DEFAULT_RESULT_TTL_S = 500
DEFAULT_FAILURE_TTL_S = 365 * 86400
CANCELED_TTL_S = 7 * 86400
MAX_GAP_S = 365 * 86400
"""The longest wait before a retry, whatever the backoff (a year)."""

OnConflict = Literal["raise", "keep"]


MAX_COUNT = 1_000_000_000
"""Most repetitions or retries one job may have (Redis counters stay far from overflow)."""
MAX_SECONDS = 100 * 365.25 * 86400
"""Longest interval, timeout or TTL, in seconds (about 100 years)."""


def _check_seconds(value: object, argument: str, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{argument} must be a number of seconds, got {type(value).__name__}: {value!r}"
        )
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{argument} must be a finite number {bound}, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(
            f"{argument} must be at most 100 years ({MAX_SECONDS:.0f} s), got {value!r}"
        )
    return seconds


def check_intervals(interval: object, argument: str) -> tuple[float, ...]:
    """Return ``interval`` (seconds or a timedelta, or a non-empty list of them) as seconds.

    Raises:
        TypeError: not a number or a list of numbers.
        ValueError: a value is negative or not finite, or the list is empty.
    """
    if isinstance(interval, (list, tuple)):
        if not interval:
            raise ValueError(f"{argument} must not be an empty list")
        return tuple(_check_gap(item, f"{argument}[{i}]") for i, item in enumerate(interval))
    return (_check_gap(interval, argument),)


def _check_gap(value: object, argument: str) -> float:
    if isinstance(value, dt.timedelta):
        return _check_seconds(value.total_seconds(), argument)
    return _check_seconds(value, argument)


def _check_count(value: object, argument: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}: {value!r}")
    if not minimum <= value <= MAX_COUNT:
        raise ValueError(f"{argument} must be from {minimum} to {MAX_COUNT:,}, got {value!r}")
    return value


def gap_for(intervals: Sequence[float], number: int) -> float:
    """Return the gap before repetition or retry ``number`` (1-based); the last value repeats."""
    return float(intervals[min(number, len(intervals)) - 1])


@dataclass(frozen=True)
class Repeat:
    """Run a job again ``times`` more times after each successful run.

    Args:
        times: repetitions after the first run (``times + 1`` runs in all), at least 1.
        interval: seconds between the end of run k and the start of repetition k, as one
            number or a list read in order (its last value is reused); 0 queues at once.
    """

    times: int
    interval: float | dt.timedelta | Sequence[float | dt.timedelta] = 0

    def __post_init__(self) -> None:
        _check_count(self.times, "times", 1)
        object.__setattr__(self, "interval", check_intervals(self.interval, "interval"))

    @property
    def intervals(self) -> tuple[float, ...]:
        """Return the intervals as a tuple of seconds."""
        return check_intervals(self.interval, "interval")

    def gaps(self) -> list[float]:
        """Return the wait in seconds before each repetition, in order (``times`` values)."""
        return [gap_for(self.intervals, number) for number in range(1, self.times + 1)]

    def to_json(self) -> str:
        """Return the policy as stored in the job."""
        return json.dumps({"times": self.times, "interval": list(self.intervals)})


@dataclass(frozen=True)
class Retry:
    """Retry a failed run up to ``max`` times; retries wait in the scheduled registry.

    Args:
        max: retries after the first failure, at least 0.
        interval: seconds before retry k, as one number or a list read in order (its last
            value is reused).
        backoff: multiplier applied to a single-number interval for each further retry.
        max_interval: cap in seconds of any gap, after backoff.
        jitter: wait a random time between half the gap and the gap, to spread a burst.
    """

    max: int
    interval: float | dt.timedelta | Sequence[float | dt.timedelta] = 0
    backoff: float = 1.0
    max_interval: float | dt.timedelta | None = None
    jitter: bool = False

    def __post_init__(self) -> None:
        _check_count(self.max, "max", 0)
        object.__setattr__(self, "interval", check_intervals(self.interval, "interval"))
        if isinstance(self.backoff, bool) or not isinstance(self.backoff, (int, float)):
            raise TypeError(f"backoff must be a number, got {self.backoff!r}")
        if not math.isfinite(self.backoff) or self.backoff < 1:
            raise ValueError(f"backoff must be a finite number >= 1, got {self.backoff!r}")
        if self.max_interval is not None:
            capped = _check_gap(self.max_interval, "max_interval")
            object.__setattr__(self, "max_interval", capped)
        if not isinstance(self.jitter, bool):
            raise TypeError(f"jitter must be a bool, got {self.jitter!r}")

    def to_json(self) -> str:
        """Return the policy as stored in the job."""
        spec = dataclasses.asdict(self)
        spec["interval"] = list(check_intervals(self.interval, "interval"))
        return json.dumps(spec)

    @staticmethod
    def gap_from_json(text: str, number: int) -> float:
        """Return the gap in seconds before retry ``number`` (1-based) of a stored policy."""
        spec: dict[str, Any] = json.loads(text)
        intervals: list[float] = spec["interval"]
        gap = gap_for(intervals, number)
        if len(intervals) == 1:
            try:
                gap *= float(spec.get("backoff", 1.0)) ** (number - 1)
            except OverflowError:
                gap = MAX_GAP_S
        if spec.get("max_interval") is not None:
            gap = min(gap, float(spec["max_interval"]))
        gap = min(gap, MAX_GAP_S)
        if spec.get("jitter"):
            gap = random.uniform(gap / 2, gap)
        return gap


def check_retry(retry: object) -> Retry | None:
    """Return ``retry`` (an int count, a ``Retry`` or ``None``) as a ``Retry`` or ``None``."""
    if retry is None or isinstance(retry, Retry):
        return retry
    return Retry(max=_check_count(retry, "retry", 0))


def check_ttl(value: object, argument: str) -> int:
    """Return a TTL in whole seconds: a number, a ``timedelta``, or -1 for forever."""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if value == -1 and not isinstance(value, bool):
        return -1
    return math.ceil(_check_seconds(value, argument))


def check_timeout(value: object) -> float:
    """Return a job timeout in seconds (a number or a ``timedelta``, > 0)."""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    return _check_seconds(value, "timeout", allow_zero=False)


@dataclass(frozen=True)
class JobOptions:
    """Everything that shapes the jobs a task creates; checked on construction."""

    queue: str = DEFAULT_QUEUE
    timeout_s: float = DEFAULT_TIMEOUT_S
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    failure_ttl_s: int = DEFAULT_FAILURE_TTL_S
    description: str | None = None
    retry: Retry | None = None
    repeat: Repeat | None = None
    job_id: str | None = None
    on_conflict: OnConflict = "raise"
    serializer: str = "json"

    def __post_init__(self) -> None:
        keys.check_queue_name(self.queue)
        serializers.get(self.serializer)
        if self.job_id is not None:
            keys.check_job_id(self.job_id)
        if self.on_conflict not in ("raise", "keep"):
            raise ValueError(f"on_conflict must be 'raise' or 'keep', got {self.on_conflict!r}")
        if self.description is not None and not isinstance(self.description, str):
            raise TypeError(f"description must be a str, got {self.description!r}")
        if self.repeat is not None and not isinstance(self.repeat, Repeat):
            raise TypeError(f"repeat must be a Repeat(times, interval), got {self.repeat!r}")

    def replace(self, **changes: Any) -> JobOptions:
        """Return a copy with ``changes`` applied and checked."""
        return dataclasses.replace(self, **normalize(changes))


def normalize(changes: dict[str, Any]) -> dict[str, Any]:
    """Turn user-facing option names and values into ``JobOptions`` fields."""
    fields: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "timeout":
            fields["timeout_s"] = check_timeout(value)
        elif name == "result_ttl":
            fields["result_ttl_s"] = check_ttl(value, "result_ttl")
        elif name == "failure_ttl":
            fields["failure_ttl_s"] = check_ttl(value, "failure_ttl")
        elif name == "retry":
            fields["retry"] = check_retry(value)
        elif name in {f.name for f in dataclasses.fields(JobOptions)}:
            fields[name] = value
        else:
            raise TypeError(f"unknown option {name!r}")
    return fields
