"""A job: one request to run a task, stored in Redis as a hash, and its life.

The states and the moves between them, each one atomic step in Redis (a Lua script)::

    (new) --enqueue--> queued --claim--> started --finish--> finished
    (new) --schedule-> scheduled --promote--> queued
    started --finish (repeat left)--> scheduled | queued
    started --fail (retry left)--> scheduled | queued      started --fail--> failed
    started --lease expired--> queued (recovered) | failed (abandoned)
    queued | scheduled --cancel--> canceled
    finished | failed | canceled --TTL--> (gone)
"""

from __future__ import annotations

import enum
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import redis

from tasks_rq import connection, keys, serializers
from tasks_rq.errors import (
    JobCanceledError,
    JobFailedError,
    JobTimeoutError,
    NoSuchJobError,
)
from tasks_rq.scripts import Scripts
from tasks_rq.timing import from_timestamp

R = TypeVar("R")

HISTORY_LENGTH = 10
RESULT_RECHECK_S = 2.0
RESULT_BACKOFF_S = 0.05
RESULT_BACKOFF_CAP_S = 1.0

logger = logging.getLogger(__name__)


class JobStatus(str, enum.Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        """Return whether the job has ended (it will not run again)."""
        return self in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass(frozen=True)
class RunRecord:
    """One run of a job, as kept in its history (latest first)."""

    outcome: str
    started_at: datetime | None
    ended_at: datetime | None
    result: Any
    error: str | None


def scripts_for(client: redis.Redis) -> Scripts:
    """Return the scripts registered on ``client`` (registered once per client)."""
    found: Scripts | None = getattr(client, "_tasks_rq_scripts", None)
    if found is None:  # kept on the client itself: an id() could be reused by a later client
        found = Scripts(client)
        client._tasks_rq_scripts = found  # type: ignore[attr-defined]
    return found


class Job(Generic[R]):
    """A handle on one job stored in Redis.

    Attributes:
        id: the job's id, unique within its queue.
        queue: the name of the job's queue.
    """

    def __init__(
        self,
        job_id: str,
        queue: str,
        fields: dict[str, str] | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        self.id = job_id
        self.queue = queue
        self._fields: dict[str, str] = fields or {}
        self._loaded = bool(fields)
        self._client = client

    def __repr__(self) -> str:
        return f"Job({self.id!r}, queue={self.queue!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and (other.id, other.queue) == (self.id, self.queue)

    def __hash__(self) -> int:
        return hash((self.id, self.queue))

    @property
    def connection(self) -> redis.Redis:
        """Return the Redis client this job uses."""
        if self._client is None:
            self._client = connection.get_client()
        return self._client

    @property
    def key(self) -> str:
        """Return the Redis key of the job's hash."""
        return keys.for_queue(self.queue).job(self.id)

    @classmethod
    def fetch(
        cls, job_id: str, queue: str | None = None, client: redis.Redis | None = None
    ) -> Job[Any]:
        """Return the stored job ``job_id``, looking in every known queue unless told which.

        Raises:
            NoSuchJobError: no queue holds a job with that id.
        """
        client = client or connection.get_client()
        names = [queue] if queue else sorted(client.smembers(keys.QUEUES))
        for name in names:
            fields = client.hgetall(keys.for_queue(name).job(job_id))
            if fields:
                return Job(job_id, name, fields, client)  # type: ignore[arg-type]
        where = f"queue {queue!r}" if queue else "any queue"
        raise NoSuchJobError(f"no job {job_id!r} in {where} (never stored, expired or deleted)")

    def refresh(self) -> None:
        """Read the job's fields from Redis again.

        Raises:
            NoSuchJobError: the job is no longer stored.
        """
        fields: dict[str, str] = self.connection.hgetall(self.key)  # type: ignore[assignment]
        if not fields:
            raise NoSuchJobError(f"job {self.id!r} is no longer stored (expired or deleted)")
        self._fields = fields
        self._loaded = True

    def _forget(self) -> None:
        self._fields = {}
        self._loaded = False

    def _field(self, name: str) -> str | None:
        if not self._loaded:
            self.refresh()
        return self._fields.get(name)

    @property
    def status(self) -> JobStatus:
        """Return the job's status, read from Redis now.

        Raises:
            NoSuchJobError: the job is no longer stored.
        """
        value = self.connection.hget(self.key, "status")
        if value is None:
            raise NoSuchJobError(f"job {self.id!r} is no longer stored (expired or deleted)")
        if self._loaded:
            self._fields["status"] = str(value)
        return JobStatus(value)

    @property
    def task_name(self) -> str:
        """Return the registered name of the job's task."""
        return self._field("task") or ""

    @property
    def serializer(self) -> serializers.Serializer:
        """Return the serializer of the job's arguments and result."""
        return serializers.get(self._field("serializer") or "json")

    @property
    def args(self) -> list[Any]:
        """Return the positional arguments the task is called with."""
        text = self._field("args")
        return list(self.serializer.loads(text)) if text else []

    @property
    def kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments the task is called with."""
        text = self._field("kwargs")
        return dict(self.serializer.loads(text)) if text else {}

    @property
    def description(self) -> str | None:
        """Return the job's description, if one was given."""
        return self._field("description")

    def _time(self, name: str) -> datetime | None:
        return from_timestamp(self._field(name))

    @property
    def created_at(self) -> datetime | None:
        """Return when the job was stored (aware, UTC)."""
        return self._time("created_at")

    @property
    def enqueued_at(self) -> datetime | None:
        """Return when the job last went onto its queue (aware, UTC)."""
        stamp = self._time("enqueued_at")
        if stamp is None and self._field("due") is None:
            return self.created_at  # queued at once: stored once, as created_at
        return stamp

    @property
    def scheduled_for(self) -> datetime | None:
        """Return when the job is (or was last) due to run (aware, UTC)."""
        return self._time("due")

    @property
    def started_at(self) -> datetime | None:
        """Return when the latest run started (aware, UTC)."""
        return self._time("started_at")

    @property
    def ended_at(self) -> datetime | None:
        """Return when the latest run ended (aware, UTC)."""
        return self._time("ended_at")

    @property
    def worker_name(self) -> str | None:
        """Return the name of the worker that ran (or runs) the latest attempt."""
        return self._field("worker")

    @property
    def runs(self) -> int:
        """Return how many runs have finished successfully."""
        return int(self._field("runs") or 0)

    @property
    def repeats_left(self) -> int:
        """Return how many repetitions are still to come (0 for a job that does not repeat)."""
        return int(self._field("repeats_left") or 0)

    @property
    def repeat_intervals(self) -> list[float]:
        """Return the gaps in seconds between repetitions, as given (empty if none)."""
        text = self._field("repeat")
        return list(json.loads(text)["interval"]) if text else []

    @property
    def retries_left(self) -> int:
        """Return how many retries the current run may still use."""
        return int(self._field("retries_left") or 0)

    @property
    def error(self) -> str | None:
        """Return the traceback (or reason) of the latest failed run, if any."""
        return self._field("error")

    @property
    def is_cancel_requested(self) -> bool:
        """Return whether a cancel arrived while the job was running."""
        return bool(self._field("cancel_requested"))

    @property
    def return_value(self) -> R | None:
        """Return the latest successful run's result without waiting (``None`` if none)."""
        text = self._field("result")
        return self.serializer.loads(text) if text is not None else None

    def result(self, timeout: float | None = None) -> R:
        """Wait for the job to end and return its result.

        A repeating job ends after its last repetition. Waiting listens for the job's end
        on a pub/sub channel rather than polling.

        Waiting rides out Redis restarts, stalls and cut connections: it reconnects with
        capped backoff until the job ends or ``timeout`` passes.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Raises:
            JobFailedError: the job failed; its ``remote_traceback`` says why.
            JobCanceledError: the job was canceled.
            JobTimeoutError: the job did not end within ``timeout``.
            NoSuchJobError: the job is no longer stored.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause_s = RESULT_BACKOFF_S
        while True:
            try:
                return self._wait_for_result(deadline, timeout)
            except connection.TRANSIENT_ERRORS as exc:
                if pause_s == RESULT_BACKOFF_S:
                    logger.warning(
                        "job %s: Redis unavailable while waiting for the result (%s); retrying",
                        self.id,
                        exc,
                    )
                if deadline is not None and time.monotonic() + pause_s >= deadline:
                    raise JobTimeoutError(
                        f"job {self.id} did not end within {timeout} s (Redis unavailable)"
                    ) from exc
                time.sleep(pause_s)
                pause_s = min(RESULT_BACKOFF_CAP_S, pause_s * 2)

    def _wait_for_result(self, deadline: float | None, timeout: float | None) -> R:
        pubsub = self.connection.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(keys.done_channel(self.queue, self.id))
            while not self.status.is_final:
                remaining = RESULT_RECHECK_S
                if deadline is not None:
                    remaining = min(remaining, deadline - time.monotonic())
                    if remaining <= 0:
                        raise JobTimeoutError(f"job {self.id} did not end within {timeout} s")
                pubsub.get_message(timeout=remaining)
        finally:
            pubsub.close()
        return self._final_result()

    def _final_result(self) -> R:
        self.refresh()
        status = JobStatus(self._fields["status"])
        if status is JobStatus.FAILED:
            raise JobFailedError(self.id, self._fields.get("error", ""))
        if status is JobStatus.CANCELED and "result" not in self._fields:
            raise JobCanceledError(f"job {self.id} was canceled")
        return self.return_value  # type: ignore[return-value]

    def history(self) -> list[RunRecord]:
        """Return the latest runs of a repeating or retried job, newest first."""
        names = keys.for_queue(self.queue)
        entries: list[str] = self.connection.lrange(names.history(self.id), 0, -1)  # type: ignore[assignment]
        return [self._run_record(entry) for entry in entries]

    def _run_record(self, entry: str) -> RunRecord:
        data = json.loads(entry)
        result = data.get("result")
        return RunRecord(
            outcome=data["outcome"],
            started_at=from_timestamp(data.get("started_at")),
            ended_at=from_timestamp(data.get("ended_at")),
            result=self.serializer.loads(result) if result is not None else None,
            error=data.get("error"),
        )

    def cancel(self) -> bool:
        """Cancel the job: it leaves its queue or the scheduled registry and never runs.

        A running job is not interrupted; it is flagged so that no repetition or retry
        follows it, and it ends as canceled.

        Returns:
            True if the job was waiting (now canceled) or running (flagged); False if it had
            already ended.

        Raises:
            NoSuchJobError: the job is no longer stored.
        """
        from tasks_rq.options import CANCELED_TTL_S

        names = keys.for_queue(self.queue)
        outcome = scripts_for(self.connection).cancel(
            keys=[self.key, names.queue, names.scheduled, names.canceled, names.history(self.id)],
            args=[self.id, time.time(), CANCELED_TTL_S, keys.done_channel(self.queue, self.id)],
        )
        if outcome == "missing":
            raise NoSuchJobError(f"job {self.id!r} is no longer stored (expired or deleted)")
        self._forget()
        return outcome in ("canceled", "cancel_requested")

    def delete(self) -> bool:
        """Delete the job and every trace of it; return whether it existed."""
        names = keys.for_queue(self.queue)
        registries = [names.registry(s) for s in keys.REGISTRY_STATUSES]
        existed = scripts_for(self.connection).delete(
            keys=[self.key, names.history(self.id), names.queue, *registries], args=[self.id]
        )
        self._forget()
        return bool(existed)

    def to_dict(self) -> dict[str, Any]:
        """Return the job's stored fields, decoded for display (``tasks-rq jobs show``)."""
        self.refresh()
        shown: dict[str, Any] = {"id": self.id, "queue": self.queue, **self._fields}
        for name in ("created_at", "enqueued_at", "due", "started_at", "ended_at"):
            if name in shown:
                stamp = from_timestamp(shown[name])
                shown[name] = stamp.isoformat() if stamp else None
        return shown
