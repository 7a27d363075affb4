"""The leases a worker holds on the jobs it claimed: renew them, give jobs back, find lost ones.

A claimed job sits in its queue's started registry with its lease deadline as the score;
the job hash names the holder (``worker``) and the claim number (``claims``). The holder
renews the deadline while the job runs. When the holder dies, the scheduler that holds the
queue's lock finds the expired lease and requeues the job (``Scheduler.recover``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Container, Iterable
from typing import Any

import redis

from tasks_rq import keys
from tasks_rq.claimed import ClaimedJob
from tasks_rq.scripts import Scripts

logger = logging.getLogger(__name__)

SWEEP_BATCH = 1000


def by_queue(jobs: Iterable[ClaimedJob]) -> dict[str, list[Any]]:
    """Return ``{queue: [job id, claim number, ...]}`` for ``jobs``."""
    pairs: dict[str, list[Any]] = {}
    for job in jobs:
        pairs.setdefault(job.queue, []).extend([job.job_id, job.claims])
    return pairs


class Leases:
    """Lease operations of one worker.

    Args:
        client: the worker's Redis client.
        scripts: the scripts registered on ``client``.
        holder: the lease holder's name (unique per worker run).
        lease_s: how long a lease lasts without renewal.
    """

    def __init__(self, client: redis.Redis, scripts: Scripts, holder: str, lease_s: float):
        self.client = client
        self.scripts = scripts
        self.holder = holder
        self.lease_s = lease_s

    def renew(self, jobs: Iterable[ClaimedJob], now: float) -> list[str]:
        """Move the deadline of the leases on ``jobs`` on; return the ids no longer held."""
        lost: list[str] = []
        for queue, pairs in by_queue(jobs).items():
            names = keys.for_queue(queue)
            lost += self.scripts.renew(
                keys=[names.started, names.job_prefix],
                args=[now + self.lease_s, self.holder, *pairs],
            )
        for job_id in lost:
            logger.warning("job %s: lease lost (it was recovered after a stall)", job_id)
        return lost

    def release(self, jobs: Iterable[ClaimedJob]) -> int:
        """Put ``jobs`` back at the front of their queues, counting no attempt.

        A queue that cannot be reached is logged and skipped: its jobs' leases expire and
        they are recovered.

        Returns:
            How many jobs went back.
        """
        released = 0
        for queue, pairs in by_queue(jobs).items():
            try:
                count = self._release(queue, pairs)
            except redis.RedisError as exc:
                logger.warning(
                    "worker %s: could not give back %d job(s) of %s (%s); their leases will expire",
                    self.holder,
                    len(pairs) // 2,
                    queue,
                    exc,
                )
                continue
            logger.info("worker %s: gave back %d job(s) to %s", self.holder, count, queue)
            released += count
        return released

    def _release(self, queue: str, pairs: list[Any]) -> int:
        names = keys.for_queue(queue)
        return int(
            self.scripts.release(
                keys=[names.started, names.queue, names.job_prefix],
                args=[self.holder, time.time(), keys.wake_channel(queue), *pairs],
            )
        )

    def give_back_unknown(self, queues: Iterable[str], known: Container[str]) -> int:
        """Give back jobs leased to this holder that are not in ``known``.

        They come from a claim whose reply was lost (connection cut, server stalled past the
        socket timeout): nothing runs them, and left alone they would wait for their lease
        to expire and count a recovery.

        Returns:
            How many jobs went back.
        """
        given = 0
        for queue in queues:
            pairs = self._unknown_leases(queue, known)
            if pairs:
                count = self._release(queue, pairs)
                logger.warning(
                    "worker %s: gave back %d job(s) of %s claimed by a call whose reply was lost",
                    self.holder,
                    count,
                    queue,
                )
                given += count
        return given

    def _unknown_leases(self, queue: str, known: Container[str]) -> list[Any]:
        names = keys.for_queue(queue)
        pairs: list[Any] = []
        for start in itertools.count(0, SWEEP_BATCH):
            ids: list[str] = self.client.zrange(  # type: ignore[assignment]
                names.started, start, start + SWEEP_BATCH - 1
            )
            unknown = [job_id for job_id in ids if job_id not in known]
            pipe = self.client.pipeline(transaction=False)
            for job_id in unknown:
                pipe.hmget(names.job(job_id), ["worker", "claims"])
            for job_id, (holder, claims) in zip(unknown, pipe.execute(), strict=True):
                if holder == self.holder:
                    pairs += [job_id, claims]
            if len(ids) < SWEEP_BATCH:
                return pairs
        return pairs
