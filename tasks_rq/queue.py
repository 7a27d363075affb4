"""Queues and the registries that hold a queue's jobs in each state.

A ``Queue`` is a Redis list of job ids waiting to run; ``ScheduledJobRegistry`` and the
other registries are sorted sets of the jobs of one queue in one state. A job is in exactly
one of them at any instant, so ``job in queue`` is False and
``job in ScheduledJobRegistry(queue=queue)`` is True for a job scheduled for later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tasks_rq import connection, keys
from tasks_rq.errors import DuplicateJobError
from tasks_rq.job import Job, JobStatus, scripts_for
from tasks_rq.options import (
    DEFAULT_FAILURE_TTL_S,
    DEFAULT_RESULT_TTL_S,
    DEFAULT_TIMEOUT_S,
    JobOptions,
)
from tasks_rq.scripts import run_script

_known_queues: set[tuple[int, str]] = set()
JOB_ID_BYTES = 12
"""Random bytes in a generated job id: 24 hex characters, 96 bits (no collision in practice)."""


@dataclass(frozen=True)
class JobRequest:
    """One job to store: its task, its encoded arguments, and when it is due."""

    task_name: str
    args: str | None
    kwargs: str | None
    options: JobOptions
    due: float | None = None
    job_id: str | None = None


class Queue:
    """A named queue of jobs waiting to run.

    Args:
        name: the queue's name.
        connection: the Redis client (default: this process's configured one).
    """

    def __init__(self, name: str = "default", connection: redis.Redis | None = None) -> None:
        self.name = keys.check_queue_name(name)
        self.keys = keys.for_queue(name)
        self._client = connection

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    @property
    def connection(self) -> redis.Redis:
        """Return the Redis client this queue uses (the process's current one if none given)."""
        return self._client if self._client is not None else connection.get_client()

    def __len__(self) -> int:
        return int(self.connection.llen(self.keys.queue))

    @property
    def count(self) -> int:
        """Return how many jobs wait in the queue."""
        return len(self)

    def __contains__(self, job: object) -> bool:
        job_id = job.id if isinstance(job, Job) else job
        return self.connection.lpos(self.keys.queue, str(job_id)) is not None

    def job_ids(self, limit: int = -1) -> list[str]:
        """Return the ids of waiting jobs, next to run first."""
        end = -1 if limit < 0 else limit - 1
        ids: list[str] = self.connection.lrange(self.keys.queue, 0, -1)  # type: ignore[assignment]
        ids.reverse()
        return ids if end < 0 else ids[: end + 1]

    def jobs(self, limit: int = -1) -> list[Job[Any]]:
        """Return the waiting jobs, next to run first."""
        return [Job(job_id, self.name, client=self.connection) for job_id in self.job_ids(limit)]

    def fetch_job(self, job_id: str) -> Job[Any]:
        """Return the job ``job_id`` of this queue.

        Raises:
            NoSuchJobError: this queue holds no such job.
        """
        return Job.fetch(job_id, self.name, self.connection)

    def registry(self, status: str | JobStatus) -> BaseRegistry:
        """Return the registry of jobs in ``status`` (not ``queued``)."""
        status = JobStatus(status)
        return _REGISTRIES[status](queue=self)

    def enqueue(self, requests: Sequence[JobRequest]) -> list[Job[Any]]:
        """Store ``requests`` (all for this queue) in one round trip; return their jobs.

        Raises:
            DuplicateJobError: a custom job id is still pending and on_conflict is "raise";
                then nothing at all is stored.
        """
        client = self.connection
        now = time.time()
        ids = [request.job_id or os.urandom(JOB_ID_BYTES).hex() for request in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("the same job_id appears twice in one enqueue; ids must differ")
        argv: list[Any] = [_conflict_mode(requests), keys.wake_channel(self.name), len(requests)]
        for job_id, request in zip(ids, requests, strict=True):
            _append_job(argv, job_id, request, now)
        names = self.keys
        script_keys = [
            names.queue,
            names.scheduled,
            names.finished,
            names.failed,
            names.canceled,
            *[names.job_prefix + job_id for job_id in ids],
        ]
        try:
            self._remember(client)
            outcomes = run_script(scripts_for(client).enqueue, script_keys, argv)
        except (
            redis.ConnectionError,
            redis.TimeoutError,
            redis.exceptions.ClusterDownError,
        ) as exc:
            raise connection.unavailable(exc) from exc
        return self._jobs_from(ids, requests, outcomes)

    def _jobs_from(
        self, ids: list[str], requests: Sequence[JobRequest], outcomes: list[str]
    ) -> list[Job[Any]]:
        client = self.connection
        jobs: list[Job[Any]] = []
        for job_id, request, outcome in zip(ids, requests, outcomes, strict=True):
            if outcome != "ok" and request.options.on_conflict == "raise":
                raise DuplicateJobError(job_id, outcome)
            jobs.append(Job(job_id, self.name, client=client))
        return jobs

    def _remember(self, client: redis.Redis) -> None:
        marker = (id(client), self.name)
        if marker not in _known_queues:
            client.sadd(keys.QUEUES, self.name)
            _known_queues.add(marker)

    def empty(self) -> int:
        """Cancel every job waiting in the queue; return how many there were."""
        count = 0
        for job in self.jobs():
            count += job.cancel()
        return count


def _conflict_mode(requests: Sequence[JobRequest]) -> str:
    if all(request.job_id is None for request in requests):
        return "new"
    return "keep" if all(r.options.on_conflict == "keep" for r in requests) else "raise"


def _append_job(argv: list[Any], job_id: str, request: JobRequest, now: float) -> None:
    """Append one job's id, due time and fields to the enqueue script's ARGV."""
    fields: dict[str, Any] = {"task": request.task_name, "created_at": now}
    if request.due is None:
        fields["status"] = "queued"
        due = ""
    else:
        due = repr(request.due)
        fields.update(status="scheduled", due=due)
    if request.args is not None:
        fields["args"] = request.args
    if request.kwargs is not None:
        fields["kwargs"] = request.kwargs
    _optional_fields(fields, request.options)
    argv += [job_id, due, len(fields)]
    for pair in fields.items():
        argv += pair


def _optional_fields(fields: dict[str, Any], options: JobOptions) -> None:
    if options.serializer != "json":
        fields["serializer"] = options.serializer
    if options.timeout_s != DEFAULT_TIMEOUT_S:
        fields["timeout"] = options.timeout_s
    if options.result_ttl_s != DEFAULT_RESULT_TTL_S:
        fields["result_ttl"] = options.result_ttl_s
    if options.failure_ttl_s != DEFAULT_FAILURE_TTL_S:
        fields["failure_ttl"] = options.failure_ttl_s
    if options.description:
        fields["description"] = options.description
    if options.retry is not None and options.retry.max > 0:
        fields.update(
            retry=options.retry.to_json(), retries=options.retry.max, retries_left=options.retry.max
        )
    if options.repeat is not None:
        fields.update(repeat=options.repeat.to_json(), repeats_left=options.repeat.times)


class BaseRegistry:
    """The jobs of one queue in one state, as a sorted set.

    Args:
        name: the queue's name (or pass ``queue``).
        queue: the queue.
        connection: the Redis client (default: the queue's).
    """

    status: JobStatus

    def __init__(
        self,
        name: str = "default",
        queue: Queue | None = None,
        connection: redis.Redis | None = None,
    ) -> None:
        self.queue = queue or Queue(name, connection)
        self.key = self.queue.keys.registry(self.status.value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.queue.name!r})"

    @property
    def connection(self) -> redis.Redis:
        """Return the Redis client this registry uses."""
        return self.queue.connection

    def __len__(self) -> int:
        return int(self.connection.zcard(self.key))

    @property
    def count(self) -> int:
        """Return how many jobs the registry holds."""
        return len(self)

    def __contains__(self, job: object) -> bool:
        job_id = job.id if isinstance(job, Job) else job
        return self.connection.zscore(self.key, str(job_id)) is not None

    def get_job_ids(self, start: int = 0, end: int = -1) -> list[str]:
        """Return the ids in the registry, lowest score (earliest) first."""
        return list(self.connection.zrange(self.key, start, end))  # type: ignore[arg-type]

    def jobs(self, limit: int = -1) -> list[Job[Any]]:
        """Return the jobs in the registry, earliest first."""
        end = -1 if limit < 0 else limit - 1
        client = self.connection
        return [Job(job_id, self.queue.name, client=client) for job_id in self.get_job_ids(0, end)]


class ScheduledJobRegistry(BaseRegistry):
    """Jobs waiting for their due time (score: due time, epoch seconds)."""

    status = JobStatus.SCHEDULED


class StartedJobRegistry(BaseRegistry):
    """Jobs claimed by a worker (score: lease deadline, epoch seconds)."""

    status = JobStatus.STARTED


class FinishedJobRegistry(BaseRegistry):
    """Jobs that ended successfully (score: when they expire)."""

    status = JobStatus.FINISHED


class FailedJobRegistry(BaseRegistry):
    """Jobs that ended failed (score: when they expire)."""

    status = JobStatus.FAILED


class CanceledJobRegistry(BaseRegistry):
    """Jobs that were canceled (score: when they expire)."""

    status = JobStatus.CANCELED


_REGISTRIES: dict[JobStatus, type[BaseRegistry]] = {
    JobStatus.SCHEDULED: ScheduledJobRegistry,
    JobStatus.STARTED: StartedJobRegistry,
    JobStatus.FINISHED: FinishedJobRegistry,
    JobStatus.FAILED: FailedJobRegistry,
    JobStatus.CANCELED: CanceledJobRegistry,
}
