"""Every Redis key and channel name tasks_rq uses, built here and nowhere else.

All keys of one queue carry the queue name as a hash tag (``{name}``), so each Lua script and
transaction touches a single slot and the same code runs on Redis Cluster.

| key                          | type   | TTL                 | written by                         |
|------------------------------|--------|---------------------|------------------------------------|
| ``trq:queues``               | set    | none                | enqueue (once per process)         |
| ``trq:workers``              | zset   | none (pruned)       | worker heartbeat (name: last seen) |
| ``trq:worker:<name>``        | hash   | 3 heartbeats        | worker heartbeat                   |
| ``trq:{q}:queue``            | list   | none                | enqueue, promote, recover, finish  |
| ``trq:{q}:scheduled``        | zset   | none                | schedule, finish (repeat, retry)   |
| ``trq:{q}:started``          | zset   | none                | claim (score: lease deadline, ms)  |
| ``trq:{q}:finished``         | zset   | none (pruned)       | finish (score: expiry, ms)         |
| ``trq:{q}:failed``           | zset   | none (pruned)       | fail, recover (score: expiry, ms)  |
| ``trq:{q}:canceled``         | zset   | none (pruned)       | cancel (score: expiry, ms)         |
| ``trq:{q}:lock``             | string | scheduler lock TTL  | scheduler holding the queue        |
| ``trq:{q}:job:<id>``         | hash   | result/failure TTL  | every move of the job              |
| ``trq:{q}:runs:<id>``        | list   | as the job          | finish (latest runs, newest first) |

Channels (pub/sub, not keys): ``trq:wake:{q}`` wakes idle workers and the scheduler of a
queue; ``trq:done:{q}:<id>`` tells waiters of ``Job.result()`` that a job ended. They carry
the queue's hash tag too: a cluster client subscribes on the node of the channel's slot, so
waiting on a queue depends only on the node that holds that queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

PREFIX = "trq"
QUEUES = f"{PREFIX}:queues"
WORKERS = f"{PREFIX}:workers"

_BAD_NAME = re.compile(r"[{}\s\x00-\x1f\x7f]")
MAX_NAME_LENGTH = 200
REGISTRY_STATUSES = ("scheduled", "started", "finished", "failed", "canceled")


def check_queue_name(name: object) -> str:
    """Return ``name`` if it is a usable queue name.

    Raises:
        TypeError: the name is not a string.
        ValueError: the name is empty, too long, or holds braces, whitespace or control
            characters (they would break the key scheme).
    """
    if not isinstance(name, str):
        raise TypeError(f"queue name must be a str, got {type(name).__name__}: {name!r}")
    if not name or len(name) > MAX_NAME_LENGTH or _BAD_NAME.search(name):
        raise ValueError(
            f"invalid queue name {name!r}: use 1-{MAX_NAME_LENGTH} characters without "
            "braces, whitespace or control characters"
        )
    return name


def check_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is a usable custom job id.

    Raises:
        TypeError: the id is not a string.
        ValueError: the id is empty, too long, or holds whitespace or control characters.
    """
    if not isinstance(job_id, str):
        raise TypeError(f"job_id must be a str, got {type(job_id).__name__}: {job_id!r}")
    if not job_id or len(job_id) > MAX_NAME_LENGTH or re.search(r"[\s\x00-\x1f\x7f]", job_id):
        raise ValueError(
            f"invalid job_id {job_id!r}: use 1-{MAX_NAME_LENGTH} characters without "
            "whitespace or control characters"
        )
    return job_id


QUEUE_KEYS_PATTERN = f"{PREFIX}:{{*"  # SCAN MATCH pattern of every per-queue key


def queue_of(key: str) -> str | None:
    """Return the queue a per-queue key belongs to (``None`` for any other key)."""
    head = f"{PREFIX}:{{"
    if not key.startswith(head) or "}" not in key:
        return None
    return key[len(head) : key.index("}")]


def worker_key(name: str) -> str:
    """Return the key of a worker's info hash."""
    return f"{PREFIX}:worker:{name}"


def done_channel(queue: str, job_id: str) -> str:
    """Return the channel told when a job of ``queue`` ends."""
    return f"{PREFIX}:done:{{{queue}}}:{job_id}"


def wake_channel(queue: str) -> str:
    """Return the channel that wakes idle workers and the scheduler of ``queue``."""
    return f"{PREFIX}:wake:{{{queue}}}"


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue, all under the queue's hash tag."""

    name: str
    queue: str
    scheduled: str
    started: str
    finished: str
    failed: str
    canceled: str
    lock: str
    job_prefix: str
    history_prefix: str

    def job(self, job_id: str) -> str:
        """Return the key of a job's hash."""
        return self.job_prefix + job_id

    def history(self, job_id: str) -> str:
        """Return the key of a job's run history list."""
        return self.history_prefix + job_id

    def registry(self, status: str) -> str:
        """Return the sorted set that holds jobs in ``status`` (not ``queued``)."""
        return {
            "scheduled": self.scheduled,
            "started": self.started,
            "finished": self.finished,
            "failed": self.failed,
            "canceled": self.canceled,
        }[status]


@lru_cache(maxsize=1024)
def for_queue(name: str) -> QueueKeys:
    """Return the keys of queue ``name`` (checked, cached)."""
    check_queue_name(name)
    base = f"{PREFIX}:{{{name}}}"
    return QueueKeys(
        name=name,
        queue=f"{base}:queue",
        scheduled=f"{base}:scheduled",
        started=f"{base}:started",
        finished=f"{base}:finished",
        failed=f"{base}:failed",
        canceled=f"{base}:canceled",
        lock=f"{base}:lock",
        job_prefix=f"{base}:job:",
        history_prefix=f"{base}:runs:",
    )
