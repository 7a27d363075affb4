"""A job as a worker holds it, and the check that its stored fields can be run at all.

A worker reads a job's hash when it claims it. Anyone who can write to Redis can write a
job hash with fields missing or garbage; such a job fails with a reason that names the
field, before it reaches a child process, and never stops the worker or touches other jobs.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from tasks_rq import serializers
from tasks_rq.options import DEFAULT_TIMEOUT_S, MAX_COUNT, Retry, gap_for
from tasks_rq.pool import Assignment

_INTEGER = re.compile(r"-?[0-9]+")
_INTEGERS = (
    "claims",
    "runs",
    "repeats_left",
    "retries",
    "retries_left",
    "recoveries",
    "result_ttl",
    "failure_ttl",
)


@dataclass
class ClaimedJob:
    """A job this worker holds a lease on.

    Attributes:
        queue: the job's queue.
        job_id: the job's id.
        fields: the job's hash as read when it was claimed.
        problem: why the stored job cannot run (``None`` if it can).
    """

    queue: str
    job_id: str
    fields: dict[str, str]
    problem: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.problem = problem_of(self.fields)

    @property
    def claims(self) -> str:
        """Return the claim number that, with the worker's name, identifies the lease."""
        return self.fields.get("claims", "0")

    @property
    def timeout_s(self) -> float:
        """Return how long a run may take (the default if the stored value is unusable)."""
        try:
            return _positive_seconds(self.fields.get("timeout") or DEFAULT_TIMEOUT_S)
        except ValueError:
            return DEFAULT_TIMEOUT_S

    def assignment(self) -> Assignment:
        """Return what a child needs to run the job."""
        fields = self.fields
        return Assignment(
            self.job_id,
            fields.get("task", ""),
            fields.get("serializer", "json"),
            fields.get("args"),
            fields.get("kwargs"),
        )


def problem_of(fields: dict[str, str]) -> str | None:
    """Return why a job with these stored fields cannot run, or ``None`` if it can."""
    if not fields.get("task"):
        return "the stored job is malformed: it has no 'task' field; it was not run"
    name = fields.get("serializer", "json")
    if name not in serializers.SERIALIZERS:
        known = ", ".join(sorted(serializers.SERIALIZERS))
        return (
            f"the stored job names an unknown serializer {name!r} (known: {known}); it was not run"
        )
    for check in (_check_integers, _check_timeout, _check_policies, _check_counts):
        try:
            found = check(fields)
        except Exception as exc:  # whatever the data, a bad job never stops the worker
            found = f"{type(exc).__name__}: {exc}"[:200]
        if found:
            return f"the stored job is malformed: {found}; it was not run"
    return None


def _check_counts(fields: dict[str, str]) -> str | None:
    # Counters within what the job's policies allow, so the next run can be computed.
    for left, total, policy in (
        ("repeats_left", "times", "repeat"),
        ("retries_left", "max", "retry"),
    ):
        value = int(fields.get(left) or 0)
        if value <= 0:
            continue
        limit = int(json.loads(fields[policy]).get(total, 0))
        if left == "retries_left":
            limit = int(fields.get("retries") or limit)
        if value > limit or value > MAX_COUNT:
            return f"field {left!r} is {value}, more than its policy allows ({limit})"
    return None


def _check_integers(fields: dict[str, str]) -> str | None:
    for name in _INTEGERS:
        value = fields.get(name)
        if value is not None and not _INTEGER.fullmatch(value):
            return f"field {name!r} is {value!r}, not an integer"
    return None


def _check_timeout(fields: dict[str, str]) -> str | None:
    value = fields.get("timeout")
    if value is None:
        return None
    try:
        _positive_seconds(value)
    except ValueError:
        return f"field 'timeout' is {value!r}, not a number of seconds > 0"
    return None


def _check_policies(fields: dict[str, str]) -> str | None:
    for count, policy in (("repeats_left", "repeat"), ("retries_left", "retry")):
        if int(fields.get(count) or 0) > 0 and policy not in fields:
            return f"field {count!r} is set but field {policy!r} is missing"
    text = fields.get("repeat")
    if text is not None:
        try:
            spec = json.loads(text)
            gap_for(spec["interval"], max(1, int(spec["times"])))
        except (ValueError, TypeError, KeyError, IndexError):
            return f"field 'repeat' is {text[:100]!r}, not a repeat policy"
    text = fields.get("retry")
    if text is not None:
        try:
            Retry.gap_from_json(text, 1)
        except (ValueError, TypeError, KeyError, IndexError):
            return f"field 'retry' is {text[:100]!r}, not a retry policy"
    return None


def _positive_seconds(value: str | float) -> float:
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"not a duration: {value!r}")
    return seconds
