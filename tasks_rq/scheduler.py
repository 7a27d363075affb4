"""The scheduler: moves due jobs onto their queue, exactly once and never early.

One scheduler is active per queue: it holds the queue's lock (a key with its owner's token
and a short TTL), refreshes only locks it owns, and promotes only while the promote script
finds its own token in the lock, so a scheduler that stalled past its TTL can never promote
after another took over. Between passes it sleeps until the earliest due job, woken early by
a pub/sub message when an earlier job is scheduled or a lock is handed over.

The lock holder of a queue also recovers the queue's jobs whose lease expired (their worker
died) and prunes expired entries of the ended-job registries.

Run it inside a worker (``tasks-rq worker --with-scheduler``, a child process the worker
restarts if it dies) or on its own (``tasks-rq scheduler``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from tasks_rq import connection, keys
from tasks_rq.job import scripts_for
from tasks_rq.options import CANCELED_TTL_S, DEFAULT_FAILURE_TTL_S
from tasks_rq.waker import wait_for_message

logger = logging.getLogger(__name__)

LOCK_TTL_S = 3.0
LOCK_ROUND_S = 0.5
MAINTENANCE_S = 1.0
PROMOTE_BATCH = 1000
RECOVER_BATCH = 100
RECOVER_ROUNDS = 20
MAX_RECOVERIES = 2
BACKOFF_CAP_S = 2.0
STALL_S = 2.0
RECOVERY_GRACE_S = 5.0
RESTART_PAUSE_S = 1.0
STOP_CHECK_S = 0.05


class Scheduler:
    """Promotes due jobs of the queues whose lock it holds.

    Args:
        queues: the queue names to serve.
        client: the Redis client.
        lock_ttl_s: how long a lock lives without refresh (takeover bound after a crash).
        max_recoveries: lease expiries of one run before it fails as abandoned.
    """

    def __init__(
        self,
        queues: Sequence[str],
        client: redis.Redis,
        *,
        lock_ttl_s: float = LOCK_TTL_S,
        max_recoveries: int = MAX_RECOVERIES,
    ) -> None:
        self.queues = [keys.check_queue_name(name) for name in queues]
        self.client = client
        self.scripts = scripts_for(client)
        self.token = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.max_recoveries = max_recoveries
        self.owned: set[str] = set()
        self.next_due: dict[str, float] = {}
        self.promoted = 0
        self._next_lock_round = 0.0
        self._next_maintenance = 0.0
        self._down_since: float | None = None
        self._last_maintenance = 0.0
        self._recover_after = 0.0
        self._is_view_broken = False

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Serve the queues until ``should_stop()`` is true, then hand the locks over."""
        logger.info("scheduler %s: serving %s", self.token, ", ".join(self.queues))
        try:
            while not should_stop():
                try:
                    self._serve(should_stop)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    self._on_outage(exc, should_stop)
                except redis.RedisError as exc:
                    # A refused command (OOM, READONLY after a failover, ...) must not end
                    # the scheduler: nothing would ever be promoted again.
                    logger.error("scheduler %s: Redis refused a command: %s", self.token, exc)
                    self._on_outage(exc, should_stop)
        finally:
            self.release_all()
            logger.info(
                "scheduler %s: stopped after promoting %d job(s)", self.token, self.promoted
            )

    def _on_outage(self, exc: Exception, should_stop: Callable[[], bool]) -> None:
        self._is_view_broken = True
        now = time.monotonic()
        if self._down_since is None:
            logger.warning("scheduler %s: Redis unreachable (%s); retrying", self.token, exc)
            self._down_since = now
        resume_at = now + min(BACKOFF_CAP_S, 0.1 * 2 ** min(6, int(now - self._down_since)))
        while not should_stop() and time.monotonic() < resume_at:
            time.sleep(min(STOP_CHECK_S, max(0.0, resume_at - time.monotonic())))

    def _serve(self, should_stop: Callable[[], bool]) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(*[keys.wake_channel(name) for name in self.queues])
            while not should_stop():
                timeout_s = self.pass_once()
                if self._down_since is not None:
                    down_s = time.monotonic() - self._down_since
                    logger.warning("scheduler %s: Redis back after %.1f s", self.token, down_s)
                    self._down_since = None
                message = self._wait(pubsub, timeout_s, should_stop)
                if message == "released":
                    self._next_lock_round = 0.0
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    @staticmethod
    def _wait(
        pubsub: redis.client.PubSub, timeout_s: float, should_stop: Callable[[], bool]
    ) -> str | None:
        # A stop signal does not interrupt a blocked read, so wait in short slices: a
        # stopping scheduler hands its locks over within STOP_CHECK_S.
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            message = wait_for_message(pubsub, max(0.0, min(remaining, STOP_CHECK_S)))
            if message is not None or remaining <= STOP_CHECK_S or should_stop():
                return message

    def pass_once(self) -> float:
        """Run one pass (locks, promotion, upkeep); return seconds until the next is due."""
        now = time.time()
        if now >= self._next_lock_round:
            self._lock_round()
            self._next_lock_round = time.time() + LOCK_ROUND_S
        for name in list(self.owned):
            self.promote(name)
        if now >= self._next_maintenance:
            self.maintain()
            self._next_maintenance = time.time() + MAINTENANCE_S
        wake_at = min(
            [self._next_lock_round, self._next_maintenance]
            + [self.next_due[name] for name in self.owned if name in self.next_due]
        )
        return max(0.0, wake_at - time.time())

    def _lock_round(self) -> None:
        for name in self.queues:
            if name in self.owned:
                if not self._lock(name, "refresh"):
                    self._lost(name)
            elif self._lock(name, "acquire"):
                self.owned.add(name)
                logger.info("scheduler %s: took the lock of queue %s", self.token, name)
            else:
                logger.debug("scheduler %s: queue %s is held by another", self.token, name)

    def _lock(self, name: str, action: str) -> bool:
        reply = self.scripts.lock(
            keys=[keys.for_queue(name).lock], args=[action, self.token, self.lock_ttl_ms]
        )
        return bool(reply)

    def _lost(self, name: str) -> None:
        self.owned.discard(name)
        self.next_due.pop(name, None)
        logger.warning(
            "scheduler %s: lost the lock of queue %s; stopped promoting it", self.token, name
        )

    def promote(self, name: str) -> int:
        """Move every due job of queue ``name`` onto it; return how many moved."""
        names = keys.for_queue(name)
        moved_total = 0
        while True:
            moved, next_due = self.scripts.promote(
                keys=[names.scheduled, names.queue, names.lock, names.job_prefix],
                args=[time.time(), PROMOTE_BATCH, self.token, keys.wake_channel(name)],
            )
            if int(moved) < 0:
                self._lost(name)
                return moved_total
            moved_total += int(moved)
            if next_due:
                self.next_due[name] = float(next_due)
            else:
                self.next_due.pop(name, None)
            if int(moved) < PROMOTE_BATCH:
                break
        if moved_total:
            self.promoted += moved_total
            logger.debug("scheduler %s: moved %d due job(s) to %s", self.token, moved_total, name)
        return moved_total

    def maintain(self) -> None:
        """Recover expired leases and prune expired registry entries of owned queues."""
        now = time.time()
        may_recover = self._may_recover(now)
        for name in list(self.owned):
            if may_recover:
                self.recover(name, now)
            names = keys.for_queue(name)
            pipe = self.client.pipeline(transaction=False)
            for registry in (names.finished, names.failed, names.canceled):
                pipe.zremrangebyscore(registry, "-inf", now)
            pipe.execute()
        self.client.zremrangebyscore(keys.WORKERS, "-inf", now - 3600)

    def _may_recover(self, now: float) -> bool:
        # After an outage, or a stall of Redis or of this process, every live worker's lease
        # may look expired until the worker renews it (workers renew as soon as Redis
        # answers again): judge leases only once Redis has answered steadily for a while.
        gap = now - self._last_maintenance if self._last_maintenance else 0.0
        self._last_maintenance = now
        if self._is_view_broken or gap > MAINTENANCE_S + STALL_S:
            self._is_view_broken = False
            self._recover_after = now + RECOVERY_GRACE_S
            logger.info(
                "scheduler %s: Redis was out of reach for a while; recovering leases again "
                "in %.0f s, once live workers have renewed theirs",
                self.token,
                RECOVERY_GRACE_S,
            )
        return now >= self._recover_after

    def recover(self, name: str, now: float | None = None) -> tuple[list[str], list[str]]:
        """Requeue (or fail as abandoned) jobs of ``name`` whose lease expired.

        Returns:
            The ids requeued and the ids failed as abandoned.
        """
        names = keys.for_queue(name)
        requeued: list[str] = []
        abandoned: list[str] = []
        for _ in range(RECOVER_ROUNDS):  # a big worker's death is recovered in one pass
            back, failed, ended_canceled = self.scripts.recover(
                keys=[names.started, names.queue, names.failed, names.job_prefix, names.canceled],
                args=[
                    now or time.time(),
                    RECOVER_BATCH,
                    self.max_recoveries,
                    DEFAULT_FAILURE_TTL_S,
                    keys.wake_channel(name),
                    keys.done_channel(name, ""),
                    CANCELED_TTL_S,
                ],
            )
            requeued += back
            abandoned += failed
            for job_id in ended_canceled:
                logger.info("job %s: its worker died after a cancel; canceled", job_id)
            if len(back) + len(failed) + len(ended_canceled) < RECOVER_BATCH:
                break
        for job_id in requeued:
            logger.warning("job %s: its worker stopped renewing the lease; requeued", job_id)
        for job_id in abandoned:
            logger.warning("job %s: abandoned too often; failed", job_id)
        return requeued, abandoned

    def release_all(self) -> None:
        """Hand every owned lock over at once, waking other schedulers."""
        for name in list(self.owned):
            with contextlib.suppress(redis.RedisError):
                if self._lock(name, "release"):
                    self.client.publish(keys.wake_channel(name), "released")
                    logger.info("scheduler %s: released the lock of queue %s", self.token, name)
        self.owned.clear()

    def run_once(self) -> int:
        """Take free locks, promote everything due, recover, release; return jobs moved."""
        self._lock_round()
        moved = sum(self.promote(name) for name in list(self.owned))
        self.maintain()
        self.release_all()
        return moved


def scheduler_main(queues: list[str], url: str, log_level: int) -> None:
    """Run a scheduler in this (child) process until SIGTERM or until its worker is gone."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A SIGKILLed worker cannot stop its scheduler child, which would go on holding locks:
    # multiprocessing's parent sentinel (a pipe from the worker) tells when the worker is gone.
    worker = multiprocessing.parent_process()

    def should_stop() -> bool:
        return bool(stopping) or (worker is not None and not worker.is_alive())

    Scheduler(queues, connection.connect(url)).run(should_stop)


class SchedulerSupervisor:
    """Keeps a scheduler child process running beside a worker.

    Args:
        queues: the queues to serve.
        client: the worker's client (its URL is given to the child).
        enabled: whether to run a scheduler at all.
        burst: run passes in-process instead of a child (burst workers).
    """

    def __init__(
        self, queues: Sequence[str], client: redis.Redis, *, enabled: bool, burst: bool
    ) -> None:
        self.queues = list(queues)
        self.client = client
        self.enabled = enabled
        self.burst = burst
        self.process: Any = None
        self._last_start = 0.0

    def start(self) -> None:
        """Start the scheduler child (not in burst mode)."""
        if not self.enabled or self.burst:
            return
        from tasks_rq.pool import _context

        self._last_start = time.monotonic()
        url = connection.url_of(self.client)
        level = logging.getLogger("tasks_rq").getEffectiveLevel()
        self.process = _context().Process(
            target=scheduler_main,
            args=(self.queues, url, level),
            daemon=True,
            name="tasks-rq-scheduler",
        )
        self.process.start()

    def watch(self) -> None:
        """Restart the scheduler child if it died."""
        if self.process is None or self.process.is_alive():
            return
        if time.monotonic() - self._last_start < RESTART_PAUSE_S:
            return
        logger.warning(
            "scheduler process %s died (exit code %s); restarting it",
            self.process.pid,
            self.process.exitcode,
        )
        self.start()

    def burst_pass(self) -> int:
        """Run one in-process scheduling pass in burst mode; return jobs moved."""
        if not (self.enabled and self.burst):
            return 0
        return Scheduler(self.queues, self.client).run_once()

    def stop(self) -> None:
        """Stop the scheduler child, letting it hand its locks over."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.is_alive() and process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
