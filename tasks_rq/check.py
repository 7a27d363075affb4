"""The consistency check behind ``tasks-rq check``: every job in exactly one place.

A job's place is where its status says it is: the queue list (``queued``) or the scheduled,
started, finished, failed or canceled registry of its queue. The check reads every queue's
keys in batches (SCAN, LRANGE, ZRANGE), finds what looks wrong, then confirms each suspect
in one atomic step (``lua/check_job.lua``), so a job that merely moved while the check read
the registries is never reported. With ``repair``, the same step fixes what is safe to fix
and says what it did.

Problems, by kind:

| kind | meaning | repair |
|---|---|---|
| ``dangling_entry`` | a queue or registry entry whose job hash is gone | entry removed |
| ``orphan_history`` | a run history whose job hash is gone | history deleted |
| ``in_no_place`` | a job in no place at all | put where its status says |
| ``in_wrong_place`` | a job not in its place, but in another | moved to its place |
| ``in_extra_place`` | a job in its place and in another as well | extra entry removed |
| ``duplicate_entry`` | a job more than once in the queue list | one entry kept |
| ``not_a_hash`` | a job key holding something other than a hash | none (reported only) |
| ``bad_status`` | a job hash without a known status | none (reported only) |

A started job found in no place (its lease entry lost) is queued again: it runs again, as
after any recovery. Entries of ended jobs whose hash expired a moment ago are not problems:
the scheduler prunes them every second; they are counted as ``expired``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.commands.core import Script

from tasks_rq import connection, keys, scripts
from tasks_rq.job import JobStatus

PLACES = tuple(status.value for status in JobStatus)
ENDED_PLACES = ("finished", "failed", "canceled")
EXPIRY_GRACE_S = 5.0
READ_BATCH = 1000
CONFIRM_BATCH = 200


@dataclass(frozen=True)
class Problem:
    """One confirmed inconsistency of one job.

    Attributes:
        queue: the job's queue.
        job_id: the job's id.
        kind: what is wrong (see the module docstring).
        place: the place concerned, if any.
        action: what the repair did (empty when nothing was done).
    """

    queue: str
    job_id: str
    kind: str
    place: str | None
    action: str


@dataclass
class QueueReport:
    """What the check found in one queue.

    Attributes:
        name: the queue's name.
        counts: entries per place, and ``jobs``: the number of job hashes.
        expired: entries of jobs whose hash just expired (pruned by the scheduler).
        problems: the confirmed problems.
    """

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass
class CheckReport:
    """What the check found in every queue it read.

    Attributes:
        queues: the report of each queue, by name.
        is_repair: whether safe repairs were made.
    """

    queues: dict[str, QueueReport]
    is_repair: bool

    @property
    def problems(self) -> list[Problem]:
        """Return every confirmed problem."""
        return [problem for report in self.queues.values() for problem in report.problems]

    @property
    def unrepaired(self) -> list[Problem]:
        """Return the problems still there: all of them, unless repaired."""
        return [problem for problem in self.problems if not problem.action]

    @property
    def is_clean(self) -> bool:
        """Return whether nothing is (still) wrong."""
        return not self.unrepaired

    def problem_counts(self) -> dict[str, int]:
        """Return how many problems of each kind were found."""
        counts: dict[str, int] = {}
        for problem in self.problems:
            counts[problem.kind] = counts.get(problem.kind, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain data (``tasks-rq check --json``)."""
        return {
            "clean": self.is_clean,
            "repair": self.is_repair,
            "problem_counts": self.problem_counts(),
            "queues": {
                name: {
                    "counts": report.counts,
                    "expired": report.expired,
                    "problems": [vars(problem) for problem in report.problems],
                }
                for name, report in self.queues.items()
            },
        }


@dataclass
class _Found:
    job_ids: set[str] = field(default_factory=set)
    history_ids: set[str] = field(default_factory=set)


def check(
    client: redis.Redis | None = None,
    *,
    queues: Sequence[str] | None = None,
    repair: bool = False,
) -> CheckReport:
    """Verify that every job of every queue is in exactly the place its status names.

    Args:
        client: the Redis client (default: this process's configured one).
        queues: the queues to check (default: every queue known or found in Redis).
        repair: fix what is safe to fix (see the module docstring).

    Returns:
        The counts and the confirmed problems of each queue, with what was repaired.
    """
    client = client or connection.get_client()
    script = client.register_script(scripts.source("check_job"))
    script.sha = str(client.script_load(script.script))
    found = _scan(client)
    if queues is None:
        known: set[str] = client.smembers(keys.QUEUES)  # type: ignore[assignment]
        queues = sorted(set(found) | known)
    reports = {
        name: _check_queue(client, script, name, found.get(name, _Found()), repair)
        for name in queues
    }
    return CheckReport(reports, repair)


def _scan(client: redis.Redis) -> dict[str, _Found]:
    found: dict[str, _Found] = {}
    for key in client.scan_iter(match=keys.QUEUE_KEYS_PATTERN, count=READ_BATCH):
        name = keys.queue_of(str(key))
        try:
            names = keys.for_queue(name or "")
        except (TypeError, ValueError):
            continue
        entry = found.setdefault(names.name, _Found())
        if key.startswith(names.job_prefix):
            entry.job_ids.add(key[len(names.job_prefix) :])
        elif key.startswith(names.history_prefix):
            entry.history_ids.add(key[len(names.history_prefix) :])
    return found


def _check_queue(
    client: redis.Redis, script: Script, name: str, found: _Found, repair: bool
) -> QueueReport:
    names = keys.for_queue(name)
    places, expiries = _read_places(client, names)
    statuses = _read_statuses(client, names, found.job_ids)
    report = QueueReport(name)
    report.counts = {
        place: sum(where.count(place) for where in places.values()) for place in PLACES
    }
    report.counts["jobs"] = len(found.job_ids)

    now = time.time()
    suspects: list[str] = []
    for job_id in sorted(set(places) | found.job_ids | found.history_ids):
        where = places.get(job_id, [])
        if job_id in found.job_ids and where == [statuses.get(job_id)]:
            continue
        if not repair and _is_expired(job_id, where, found, expiries, now):
            report.expired += 1
            continue
        suspects.append(job_id)
    for start in range(0, len(suspects), CONFIRM_BATCH):
        _confirm(client, script, report, suspects[start : start + CONFIRM_BATCH], repair, now)
    return report


def _is_expired(
    job_id: str,
    where: list[str],
    found: _Found,
    expiries: dict[str, float],
    now: float,
) -> bool:
    if job_id in found.job_ids or job_id in found.history_ids or not where:
        return False
    is_ended = all(place in ENDED_PLACES for place in where)
    return is_ended and expiries.get(job_id, now) <= now + EXPIRY_GRACE_S


def _read_places(
    client: redis.Redis, names: keys.QueueKeys
) -> tuple[dict[str, list[str]], dict[str, float]]:
    places: dict[str, list[str]] = {}
    for job_id in _read_list(client, names.queue):
        places.setdefault(job_id, []).append("queued")
    expiries: dict[str, float] = {}
    for status in keys.REGISTRY_STATUSES:
        for job_id, score in _read_zset(client, names.registry(status)):
            places.setdefault(job_id, []).append(status)
            if status in ENDED_PLACES:
                expiries[job_id] = max(score, expiries.get(job_id, score))
    return places, expiries


def _read_list(client: redis.Redis, key: str) -> Iterable[str]:
    start = 0
    while True:
        page: list[str] = client.lrange(key, start, start + READ_BATCH - 1)  # type: ignore[assignment]
        yield from page
        if len(page) < READ_BATCH:
            return
        start += READ_BATCH


def _read_zset(client: redis.Redis, key: str) -> Iterable[tuple[str, float]]:
    start = 0
    while True:
        page: list[tuple[str, float]] = client.zrange(  # type: ignore[assignment]
            key, start, start + READ_BATCH - 1, withscores=True
        )
        yield from page
        if len(page) < READ_BATCH:
            return
        start += READ_BATCH


def _read_statuses(
    client: redis.Redis, names: keys.QueueKeys, job_ids: Iterable[str]
) -> dict[str, str | None]:
    ordered = sorted(job_ids)
    statuses: dict[str, str | None] = {}
    for start in range(0, len(ordered), READ_BATCH):
        batch = ordered[start : start + READ_BATCH]
        pipe = client.pipeline(transaction=False)
        for job_id in batch:
            pipe.hget(names.job(job_id), "status")
        replies = pipe.execute(raise_on_error=False)
        for job_id, reply in zip(batch, replies, strict=True):
            statuses[job_id] = reply if isinstance(reply, str) else None
    return statuses


def _confirm(
    client: redis.Redis,
    script: Script,
    report: QueueReport,
    job_ids: list[str],
    repair: bool,
    now: float,
) -> None:
    names = keys.for_queue(report.name)
    registries = [names.registry(status) for status in keys.REGISTRY_STATUSES]
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        scripts.queue_call(
            pipe,
            script,
            [names.job(job_id), names.history(job_id), names.queue, *registries],
            [job_id, now, "repair" if repair else "inspect", EXPIRY_GRACE_S],
        )
    for job_id, reply in zip(job_ids, pipe.execute(), strict=True):
        for index in range(0, len(reply), 2):
            kind, _, place = str(reply[index]).partition(":")
            if kind == "expired_entry":
                report.expired += 1
                continue
            problem = Problem(report.name, job_id, kind, place or None, str(reply[index + 1]))
            report.problems.append(problem)


def render(report: CheckReport) -> str:
    """Return the report as text: counts per queue, then each problem and what was done."""
    from tasks_rq.display import table

    headers = ["queue", *PLACES, "jobs", "expired", "problems"]
    rows = [_counts_row(queue) for queue in report.queues.values()]
    parts = [table(headers, rows) if rows else "no queue found"]
    if report.problems:
        details = [
            [p.queue, p.job_id, p.kind, p.place or "-", p.action or "-"] for p in report.problems
        ]
        parts.append(table(["queue", "job", "problem", "place", "repair"], details))
    found = len(report.problems)
    if not found:
        parts.append("clean: every job is in exactly the place its status names")
    elif report.is_repair:
        left = len(report.unrepaired)
        parts.append(f"{found} problem(s) found, {found - left} repaired, {left} left")
    else:
        parts.append(f"{found} problem(s) found; run with --repair to fix what is safe to fix")
    return "\n\n".join(parts)


def _counts_row(queue: QueueReport) -> list[Any]:
    counts = [queue.counts.get(place, 0) for place in (*PLACES, "jobs")]
    return [queue.name, *counts, queue.expired, len(queue.problems)]
