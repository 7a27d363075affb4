"""Look inside the Redis that tasks_rq uses: queue counts, workers, scheduler locks and jobs.

Read-only views back ``tasks-rq info`` and ``tasks-rq jobs``; two repairs change state, each
through a Lua script: ``requeue`` puts failed jobs back on their queue (atomic per call) and
``purge`` deletes the jobs of a queue in one state (atomic per batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from tasks_rq import keys
from tasks_rq.errors import NoSuchQueueError
from tasks_rq.job import Job, JobStatus, scripts_for
from tasks_rq.timing import from_timestamp

logger = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = tuple(status.value for status in JobStatus)
"""Every job status, in the order of a job's life."""

BATCH_SIZE = 500
"""Jobs moved or deleted by one Lua call of a walk over many jobs."""

_NEWEST_FIRST = ("finished", "failed", "canceled")
_TIME_OF_STATUS = {
    "queued": "enqueued_at",
    "scheduled": "due",
    "started": "started_at",
    "finished": "ended_at",
    "failed": "ended_at",
    "canceled": "ended_at",
}
_SUMMARY_FIELDS = (
    "status",
    "task",
    "description",
    "created_at",
    "enqueued_at",
    "due",
    "started_at",
    "ended_at",
)

Progress = Callable[[int], None]
"""Called with how many more jobs a walk over many jobs has handled."""


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True)
class QueueStats:
    """How many jobs one queue holds in each state, and which scheduler serves it.

    Attributes:
        name: the queue's name.
        counts: jobs per status, for every status in ``STATUSES``.
        scheduler: the token of the scheduler holding the queue's lock (``None``: none).
    """

    name: str
    counts: dict[str, int]
    scheduler: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the stats as plain JSON-ready values."""
        return {"name": self.name, **self.counts, "scheduler": self.scheduler}


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker last said about itself in its heartbeat.

    Attributes:
        name: the worker's name.
        state: "idle", "busy", or "lost" when its heartbeat expired without a goodbye.
        queues: the queues it serves, first served first.
        jobs: ids of the jobs it runs now.
        heartbeat: when it last reported (aware, UTC).
        pid: its process id.
        host: the machine it runs on.
        concurrency: how many jobs it runs at once.
        processed: how many jobs it has ended so far.
    """

    name: str
    state: str
    queues: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    heartbeat: datetime | None = None
    pid: int | None = None
    host: str | None = None
    concurrency: int | None = None
    processed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the worker's info as plain JSON-ready values."""
        return {**self.__dict__, "heartbeat": _iso(self.heartbeat)}


@dataclass(frozen=True)
class Overview:
    """Everything ``tasks-rq info`` shows, read at one moment.

    Attributes:
        queues: stats of every known queue, by name.
        workers: every registered worker, by name.
        taken_at: when it was read (aware, UTC).
    """

    queues: list[QueueStats]
    workers: list[WorkerInfo]
    taken_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the overview as plain JSON-ready values."""
        return {
            "taken_at": self.taken_at.isoformat(),
            "queues": [stats.to_dict() for stats in self.queues],
            "workers": [worker.to_dict() for worker in self.workers],
        }


@dataclass(frozen=True)
class JobSummary:
    """One line about a job, as ``tasks-rq jobs list`` shows it.

    Attributes:
        id: the job's id.
        queue: its queue.
        status: its status.
        task_name: the registered name of its task.
        when: the moment that matters in its status: queued at, due at, started at or
            ended at (aware, UTC).
        description: its description, if one was given.
    """

    id: str
    queue: str
    status: str
    task_name: str
    when: datetime | None
    description: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values."""
        return {**self.__dict__, "when": _iso(self.when)}


def known_queues(client: redis.Redis) -> list[str]:
    """Return the names of every queue a job was ever stored in, sorted."""
    return sorted(client.smembers(keys.QUEUES))  # type: ignore[arg-type]


def check_queue(client: redis.Redis, name: str) -> str:
    """Return ``name`` if a job was ever stored in that queue.

    Raises:
        ValueError: the name cannot be a queue's name.
        NoSuchQueueError: no job was ever stored in a queue of that name.
    """
    keys.check_queue_name(name)
    if not client.sismember(keys.QUEUES, name):
        known = ", ".join(known_queues(client)) or "none yet"
        raise NoSuchQueueError(f"no queue {name!r} (known queues: {known})")
    return name


def queue_stats(client: redis.Redis, names: Sequence[str]) -> list[QueueStats]:
    """Return the job counts and scheduler of each queue in ``names``, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        queue_keys = keys.for_queue(name)
        pipe.llen(queue_keys.queue)
        for status in keys.REGISTRY_STATUSES:
            pipe.zcard(queue_keys.registry(status))
        pipe.get(queue_keys.lock)
    replies = pipe.execute()

    width = 2 + len(keys.REGISTRY_STATUSES)
    stats: list[QueueStats] = []
    for index, name in enumerate(names):
        row = replies[index * width : (index + 1) * width]
        counts = dict(zip(("queued", *keys.REGISTRY_STATUSES), map(int, row[:-1]), strict=True))
        stats.append(QueueStats(name, {s: counts[s] for s in STATUSES}, row[-1]))
    return stats


def workers(client: redis.Redis) -> list[WorkerInfo]:
    """Return every worker registered in Redis, by name, from their latest heartbeats."""
    seen: list[tuple[str, float]] = client.zrange(keys.WORKERS, 0, -1, withscores=True)  # type: ignore[assignment]
    names = sorted(seen)
    pipe = client.pipeline(transaction=False)
    for name, _ in names:
        pipe.hgetall(keys.worker_key(name))
    return [
        _worker_info(name, last_seen, info)
        for (name, last_seen), info in zip(names, pipe.execute(), strict=True)
    ]


def _worker_info(name: str, last_seen: float, info: dict[str, str]) -> WorkerInfo:
    if not info:
        return WorkerInfo(name, "lost", heartbeat=from_timestamp(last_seen))

    def number(key: str) -> int | None:
        value = info.get(key)
        return int(value) if value else None

    return WorkerInfo(
        name=name,
        state=info.get("state", "idle"),
        queues=[q for q in info.get("queues", "").split(",") if q],
        jobs=[j for j in info.get("jobs", "").split(",") if j],
        heartbeat=from_timestamp(info.get("heartbeat") or last_seen),
        pid=number("pid"),
        host=info.get("host"),
        concurrency=number("concurrency"),
        processed=number("processed"),
    )


def overview(client: redis.Redis) -> Overview:
    """Return the stats of every known queue and every registered worker."""
    return Overview(
        queues=queue_stats(client, known_queues(client)),
        workers=workers(client),
        taken_at=datetime.now(timezone.utc),
    )


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    return status


def count_jobs(client: redis.Redis, queue: str, status: str) -> int:
    """Return how many jobs of ``queue`` are in ``status``."""
    queue_keys = keys.for_queue(queue)
    if _check_status(status) == "queued":
        return int(client.llen(queue_keys.queue))
    return int(client.zcard(queue_keys.registry(status)))


def _job_ids(client: redis.Redis, queue: str, status: str, limit: int) -> list[str]:
    queue_keys = keys.for_queue(queue)
    if status == "queued":
        ids: list[str] = client.lrange(queue_keys.queue, -limit, -1)  # type: ignore[assignment]
        return ids[::-1]
    registry = queue_keys.registry(status)
    if status in _NEWEST_FIRST:
        return client.zrevrange(registry, 0, limit - 1)  # type: ignore[return-value]
    return client.zrange(registry, 0, limit - 1)  # type: ignore[return-value]


def list_jobs(
    client: redis.Redis,
    queue: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[JobSummary]:
    """Return up to ``limit`` jobs, by queue and then in the order of a job's life.

    Waiting jobs come next-to-run first, scheduled ones earliest first, ended ones newest
    first.

    Args:
        queue: only this queue (default: every known queue).
        status: only jobs in this status (default: every status).
        limit: the most jobs to return, at least 1.

    Raises:
        NoSuchQueueError: ``queue`` was never used.
        ValueError: ``status`` or ``limit`` is not valid.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    queues = [check_queue(client, queue)] if queue else known_queues(client)
    statuses = [_check_status(status)] if status else list(STATUSES)
    found: list[tuple[str, str, str]] = []
    for name in queues:
        for wanted in statuses:
            if len(found) >= limit:
                break
            ids = _job_ids(client, name, wanted, limit - len(found))
            found += [(name, wanted, job_id) for job_id in ids]
    return _summaries(client, found)


def _summaries(client: redis.Redis, found: list[tuple[str, str, str]]) -> list[JobSummary]:
    pipe = client.pipeline(transaction=False)
    for queue, _, job_id in found:
        pipe.hmget(keys.for_queue(queue).job(job_id), _SUMMARY_FIELDS)
    summaries: list[JobSummary] = []
    for (queue, _, job_id), values in zip(found, pipe.execute(), strict=True):
        fields = dict(zip(_SUMMARY_FIELDS, values, strict=True))
        if fields["status"] is None:
            continue  # expired or deleted since its id was read
        status = fields["status"]
        summaries.append(
            JobSummary(
                id=job_id,
                queue=queue,
                status=status,
                task_name=fields["task"] or "",
                when=from_timestamp(
                    fields[_TIME_OF_STATUS.get(status, "created_at")] or fields["created_at"]
                ),
                description=fields["description"],
            )
        )
    return summaries


def requeue(client: redis.Redis, queue: str, job_ids: Sequence[str]) -> list[str]:
    """Put failed jobs of ``queue`` back on it, with their retries counted afresh.

    Each job moves in one atomic step; a job that is not failed is left as it is.

    Returns:
        One outcome per id: "requeued", "missing" (not stored), or the status of a job that
        is not failed.
    """
    if not job_ids:
        return []
    queue_keys = keys.for_queue(queue)
    outcomes: list[str] = scripts_for(client).requeue(
        keys=[
            queue_keys.failed,
            queue_keys.queue,
            queue_keys.job_prefix,
            queue_keys.history_prefix,
        ],
        args=[time.time(), keys.wake_channel(queue), *job_ids],
    )
    for job_id, outcome in zip(job_ids, outcomes, strict=True):
        logger.debug("job %s: requeue on %s: %s", job_id, queue, outcome)
    return outcomes


def requeue_job(client: redis.Redis, job_id: str, queue: str | None = None) -> tuple[Job[Any], str]:
    """Put the failed job ``job_id`` back on its queue.

    Args:
        job_id: the job's id.
        queue: its queue (default: look in every known queue).

    Returns:
        The job and the outcome: "requeued", or the status of a job that is not failed.

    Raises:
        NoSuchQueueError: ``queue`` was never used.
        NoSuchJobError: no such job is stored.
    """
    if queue:
        check_queue(client, queue)
    job = Job.fetch(job_id, queue, client)
    outcome = requeue(client, job.queue, [job.id])[0]
    if outcome == "requeued":
        logger.info("job %s: requeued on %s after failing", job.id, job.queue)
    return job, outcome


def requeue_failed(client: redis.Redis, queue: str, on_progress: Progress | None = None) -> int:
    """Put every failed job of ``queue`` back on it, in batches; return how many moved.

    Jobs that fail again while the walk goes on are not requeued a second time: the walk
    stops after as many jobs as the failed registry held when it began.

    Raises:
        NoSuchQueueError: ``queue`` was never used.
    """
    check_queue(client, queue)
    registry = keys.for_queue(queue).failed
    remaining = int(client.zcard(registry))
    moved = 0
    while remaining > 0:
        batch: list[str] = client.zrange(registry, 0, min(remaining, BATCH_SIZE) - 1)  # type: ignore[assignment]
        if not batch:
            break
        outcomes = requeue(client, queue, batch)
        moved += outcomes.count("requeued")
        remaining -= len(batch)
        if on_progress:
            on_progress(len(batch))
    logger.info("queue %s: requeued %d failed job(s)", queue, moved)
    return moved


def purge(client: redis.Redis, queue: str, status: str, on_progress: Progress | None = None) -> int:
    """Delete the jobs of ``queue`` in ``status``, in atomic batches; return how many went.

    Every deleted job loses its hash and run history. The walk stops after as many jobs as
    the queue held in that status when it began, so a busy queue cannot keep it going.
    Purging ``started`` jobs deletes jobs that workers are running; their outcome is then
    dropped.

    Raises:
        NoSuchQueueError: ``queue`` was never used.
        ValueError: ``status`` is not a job status.
    """
    check_queue(client, queue)
    queue_keys = keys.for_queue(queue)
    remaining = count_jobs(client, queue, status)
    is_list = status == "queued"
    source = queue_keys.queue if is_list else queue_keys.registry(status)
    script = scripts_for(client).purge
    deleted = 0
    while remaining > 0:
        count = int(
            script(
                keys=[source, queue_keys.job_prefix, queue_keys.history_prefix],
                args=["list" if is_list else "zset", min(remaining, BATCH_SIZE)],
            )
        )
        if count == 0:
            break
        deleted += count
        remaining -= count
        if on_progress:
            on_progress(count)
    logger.info("queue %s: purged %d %s job(s)", queue, deleted, status)
    return deleted


def job_details(job: Job[Any]) -> dict[str, Any]:
    """Return everything worth showing about ``job``, decoded (``tasks-rq jobs show``).

    Raises:
        NoSuchJobError: the job is no longer stored.
    """
    raw = job.to_dict()
    details: dict[str, Any] = {
        "id": job.id,
        "queue": job.queue,
        "task": job.task_name,
        "status": raw["status"],
        "description": job.description,
        "args": _decoded(lambda: job.args, raw.get("args")),
        "kwargs": _decoded(lambda: job.kwargs, raw.get("kwargs")),
    }
    details.update(
        created_at=_iso(job.created_at),
        enqueued_at=_iso(job.enqueued_at),
        due=_iso(job.scheduled_for),
        started_at=_iso(job.started_at),
        ended_at=_iso(job.ended_at),
        worker=job.worker_name,
    )
    details.update(_counters(job, raw))
    if "result" in raw:
        details["result"] = _decoded(lambda: job.return_value, raw["result"])
    details["error"] = job.error
    details["history"] = [
        {**run.__dict__, "started_at": _iso(run.started_at), "ended_at": _iso(run.ended_at)}
        for run in job.history()
    ]
    return details


def _counters(job: Job[Any], raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "runs": job.runs,
        "repeats_left": job.repeats_left,
        "repeat_intervals": job.repeat_intervals,
        "retries_left": job.retries_left,
        "retries": int(raw.get("retries") or 0),
        "requeues": int(raw.get("requeues") or 0),
        "claims": int(raw.get("claims") or 0),
    }


def _decoded(read: Callable[[], Any], stored: str | None) -> Any:
    try:
        return read()
    except Exception:  # a pickled value whose class this process cannot import
        return stored
