"""The worker: claims jobs from its queues, runs them in its pool, records their outcome.

One loop in the worker's main process: claim jobs (a batch per round trip, each with a
lease), hand them to idle children, wait for outcomes, finish them (many per round trip),
renew the leases of what it holds, and heartbeat. Idle, it sleeps on a pub/sub channel that
enqueues publish to, so a new job starts within milliseconds without polling.

Shutdown: the first SIGINT or SIGTERM stops claiming, gives back jobs claimed but not yet
handed to a child, and waits for running jobs (and the rest of a batch of fast jobs a child
already holds) to end. A second signal, or ``shutdown_timeout``
passing, kills the running jobs and puts them back at the front of their queue without
spending a retry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from types import FrameType
from typing import Any

import redis

from tasks_rq import connection, keys
from tasks_rq.claimed import ClaimedJob
from tasks_rq.job import scripts_for
from tasks_rq.lease import Leases
from tasks_rq.outcomes import finish_calls, log_outcome
from tasks_rq.pool import Child, Outcome, Pool
from tasks_rq.queue import Queue
from tasks_rq.scripts import run_pipeline
from tasks_rq.waker import Waker

logger = logging.getLogger(__name__)

DEFAULT_LEASE_S = 15.0
FAST_JOB_S = 0.005
PREFETCH_PER_CHILD = 32
BATCH_PER_CHILD = 16
FLUSH_BATCH = 64
FLUSH_DELAY_S = 0.02
BACKOFF_CAP_S = 2.0
SWEEPS_AFTER_LOST_CLAIM = 2


class Worker:
    """Runs the jobs of its queues, the first queue served first.

    Args:
        queues: queue names (or ``Queue`` objects), highest priority first.
        name: a unique name (default: host, pid and a random suffix).
        concurrency: how many jobs run at once, each in its own child process.
        imports: modules to import before taking jobs (their tasks get registered).
        lease_s: how long a claimed job stays leased without renewal; a worker that dies
            gets its jobs recovered about this long after its last renewal.
        shutdown_timeout_s: after the first stop signal, how long running jobs may take
            before they are killed and put back (``None``: as long as they need).
        connection: a Redis client (default: this process's configured one).
    """

    def __init__(
        self,
        queues: Sequence[str | Queue] = ("default",),
        *,
        name: str | None = None,
        concurrency: int = 1,
        imports: Sequence[str] = (),
        lease_s: float = DEFAULT_LEASE_S,
        shutdown_timeout_s: float | None = None,
        connection: redis.Redis | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        names = [q.name if isinstance(q, Queue) else keys.check_queue_name(q) for q in queues]
        if not names:
            raise ValueError("a worker needs at least one queue")
        self.queues = list(dict.fromkeys(names))
        self.name = name or f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(2)}"
        self.lease_holder = f"{self.name}/{secrets.token_hex(4)}"
        self.concurrency = concurrency
        self.imports = list(imports)
        self.lease_s = lease_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._client = connection
        self.processed = 0
        self._held: dict[str, ClaimedJob] = {}
        self._pending: list[tuple[ClaimedJob, Outcome]] = []
        self._ended_children: list[Child] = []
        self._fast_tasks: dict[str, bool] = {}
        self._buffer: deque[ClaimedJob] = deque()
        self._stop_requested = 0
        self._stop_started = 0.0
        self._wake_read, self._wake_write = -1, -1
        self._fast = False
        self._next_heartbeat = 0.0
        self._redis_down_since: float | None = None
        self._sweeps_left = 0
        self._is_flush_in_doubt = False

    @property
    def connection(self) -> redis.Redis:
        """Return the Redis client of the worker."""
        if self._client is None:
            self._client = connection.get_client()
        return self._client

    def request_stop(self, hard: bool = False) -> None:
        """Ask the worker to stop (as SIGTERM does); ``hard`` also stops running jobs."""
        self._stop_requested = 2 if hard else self._stop_requested + 1
        if not self._stop_started:
            self._stop_started = time.monotonic()
        if self._wake_write >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_write, b"s")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stop_requested:
            logger.warning("worker %s: second %s, stopping running jobs", self.name, name)
        else:
            logger.info("worker %s: %s received, finishing running jobs", self.name, name)
        self.request_stop()

    def work(self, *, burst: bool = False, with_scheduler: bool = False) -> int:
        """Run jobs until stopped (or, with ``burst``, until the queues are empty).

        Args:
            burst: stop once no job is left to run.
            with_scheduler: also run the scheduler, in a child process (in burst mode, one
                scheduling pass before working and once more before stopping).

        Returns:
            How many jobs this worker ran.
        """
        client = self.connection
        self._open_wake_pipe()
        self._stop_requested = 0
        self._stop_started = 0.0
        self._scripts = scripts_for(client)
        self._scripts.load_all()
        self._leases = Leases(client, self._scripts, self.lease_holder, self.lease_s)
        for name in self.queues:
            Queue(name, client)._remember(client)
        previous_handlers = self._install_signals()
        from tasks_rq.scheduler import SchedulerSupervisor

        supervisor = SchedulerSupervisor(self.queues, client, enabled=with_scheduler, burst=burst)
        self.pool = Pool(self.concurrency, self.imports)
        waker = Waker(client, self.queues, self._wake_write)
        logger.info(
            "worker %s: started on %s, concurrency %d",
            self.name,
            ", ".join(self.queues),
            self.concurrency,
        )
        try:
            supervisor.start()
            waker.start()
            self._loop(burst, supervisor)
        finally:
            self._shutdown(waker, supervisor)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        return self.processed

    def _open_wake_pipe(self) -> None:
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _loop(self, burst: bool, supervisor: Any) -> None:
        while True:
            if self._stop_requested >= 2 or self._shutdown_timed_out():
                return
            if self._stop_requested:
                self._release(list(self._buffer))
                self._buffer.clear()
                if not self.pool.busy():
                    return
            else:
                self._guarded(self._fill)
            if burst and not self._held and not self._stop_requested:
                if self._is_burst_done(supervisor):
                    return
                continue
            self._wait(self._wait_limit())
            self._check_children()
            if self._pending and self._is_flush_due():
                self._guarded(self._flush)
            self._guarded(self._heartbeat)
            if not self._stop_requested:  # a scheduler stopped by the same signal stays down
                supervisor.watch()

    def _wait_limit(self) -> float:
        if self._buffer and self.pool.idle():
            return 0.0
        if self._pending:
            return max(0.0, FLUSH_DELAY_S - (time.time() - self._pending[0][1].ended_at))
        return 1.0

    def _is_flush_due(self) -> bool:
        # Outcomes of fast jobs are recorded in batches (one round trip for many); nothing
        # waits longer than FLUSH_DELAY_S, and a worker with nothing left to start flushes
        # at once.
        return bool(
            not self._buffer
            or self._stop_requested
            or len(self._pending) >= FLUSH_BATCH
            or time.time() - self._pending[0][1].ended_at >= FLUSH_DELAY_S
        )

    def _is_burst_done(self, supervisor: Any) -> bool:
        try:
            is_done = supervisor.burst_pass() == 0 and not self._claim_into_buffer()
        except redis.RedisError as exc:
            self._on_redis_down(exc)
            return False
        self._on_redis_up()
        return is_done

    def _shutdown_timed_out(self) -> bool:
        limit = self.shutdown_timeout_s
        return bool(
            self._stop_requested
            and limit is not None
            and time.monotonic() - self._stop_started > limit
        )

    def _guarded(self, step: Callable[[], bool]) -> None:
        """Run ``step``, which returns whether it reached Redis; back off while Redis fails."""
        try:
            has_reached_redis = step()
        except redis.RedisError as exc:
            self._on_redis_down(exc)
        else:
            if has_reached_redis:
                self._on_redis_up()

    def _on_redis_down(self, exc: redis.RedisError) -> None:
        # One line per outage, not per attempt; a refused command (a bug, or data that is
        # not ours) backs off the same way rather than ending the worker.
        now = time.monotonic()
        if self._redis_down_since is None:
            self._redis_down_since = now
            if isinstance(exc, connection.TRANSIENT_ERRORS):
                logger.warning(
                    "worker %s: Redis unavailable (%s: %s); retrying with backoff",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
            else:
                logger.error("worker %s: Redis refused a command (%r); retrying", self.name, exc)
        pause = min(BACKOFF_CAP_S, 0.1 * 2 ** min(10, int(now - self._redis_down_since)))
        self._wait(pause)

    def _on_redis_up(self) -> None:
        if self._redis_down_since is not None:
            down_s = time.monotonic() - self._redis_down_since
            logger.warning("worker %s: Redis reachable again after %.1f s", self.name, down_s)
            self._redis_down_since = None
            self._next_heartbeat = 0.0  # renew the leases now, before they run out

    def _fill(self) -> bool:
        idle = self.pool.idle()
        must_claim = bool(idle) and len(self._buffer) < len(idle)
        if must_claim:
            self._claim_into_buffer()
        for child in self.pool.idle():
            if not self._buffer:
                break
            self._dispatch_next(child)
        return must_claim

    def _claim_into_buffer(self) -> int:
        idle = max(1, len(self.pool.idle()))
        want = idle * PREFETCH_PER_CHILD if self._fast else idle
        want -= len(self._buffer)
        claimed = 0
        for name in self.queues:
            if want - claimed <= 0:
                break
            claimed += self._claim(name, want - claimed)
        return claimed

    def _claim(self, queue: str, count: int) -> int:
        names = keys.for_queue(queue)
        now = time.time()
        try:
            reply = self._scripts.claim(
                keys=[names.queue, names.started, names.job_prefix],
                args=[now, now + self.lease_s, count, self.lease_holder],
            )
        except connection.TRANSIENT_ERRORS:
            # The claim may have run with its reply lost: look for jobs leased to this
            # worker that it does not know of, and give them back.
            self._sweeps_left = SWEEPS_AFTER_LOST_CLAIM
            raise
        for index in range(0, len(reply), 2):
            fields = dict(zip(reply[index + 1][::2], reply[index + 1][1::2], strict=True))
            if not fields:
                logger.warning(
                    "job %s: its key in queue %s is not a job hash; dropped from the queue",
                    reply[index],
                    queue,
                )
                continue
            job = ClaimedJob(queue, reply[index], fields)
            self._held[job.job_id] = job
            self._buffer.append(job)
        return len(reply) // 2

    def _dispatch_next(self, child: Child) -> None:
        """Send the idle ``child`` the next job, or a short batch of them if jobs are fast."""
        if self._stop_requested:
            return
        batch: list[ClaimedJob] = []
        while self._buffer and len(batch) < BATCH_PER_CHILD:
            if batch and not self._fast_tasks.get(self._buffer[0].fields.get("task", "")):
                break  # only jobs of tasks seen to be fast share a batch
            job = self._buffer.popleft()
            if job.problem:
                now = time.time()
                self._pending.append((job, Outcome(job.job_id, False, job.problem, now, now)))
            else:
                batch.append(job)
        if not batch:
            return
        logger.debug("job %s: starting %s", batch[0].job_id, batch[0].fields.get("task"))
        try:
            child.send([job.assignment() for job in batch], [job.timeout_s for job in batch])
        except (OSError, BrokenPipeError):
            self._buffer.extendleft(reversed(batch))
            child.in_flight.clear()
            self.pool.replace(child)

    def _wait(self, timeout: float) -> None:
        waitables: list[Any] = [self._wake_read]
        for child in self.pool.busy():
            waitables += [child.conn, child.process.sentinel]
            timeout = min(timeout, max(0.0, child.deadline - time.monotonic()))
        ready = wait(waitables, timeout=timeout)
        if self._wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_read, 4096)
        self._ended_children = [c for c in self.pool.busy() if c.process.sentinel in ready]
        for child in self.pool.busy():
            if child.conn in ready:
                self._receive(child)

    def _receive(self, child: Child) -> None:
        """Take every outcome the child has sent so far, then give it more work if idle."""
        try:
            while child.in_flight and child.conn.poll():
                outcome = child.take_outcome()
                job = self._held.get(outcome.job_id)
                if job is not None:
                    self._pending.append((job, outcome))
                    is_fast = outcome.ended_at - outcome.started_at < FAST_JOB_S
                    self._fast_tasks[job.fields.get("task", "")] = is_fast
                    self._fast = is_fast
        except (EOFError, OSError):
            return  # the child died: _check_children fails its job
        if child.is_idle:
            self._dispatch_next(child)

    def _check_children(self) -> None:
        now = time.monotonic()
        for child in list(self.pool.busy()):
            with contextlib.suppress(EOFError, OSError):
                if child.conn.poll():
                    self._receive(child)  # outcomes sent before it ended or timed out
            if child.is_idle:
                continue
            job = self._held.get(child.job_id or "")
            if child in self._ended_children or not child.process.is_alive():
                reason = f"{child.exit_description()} while running the job"
            elif now > child.deadline and job is not None:
                reason = f"timed out after {job.timeout_s:g} s; the job's process was killed"
            else:
                continue
            self._fail_running(child, job, reason, now)
        self._ended_children = []

    def _fail_running(self, child: Child, job: ClaimedJob | None, reason: str, now: float) -> None:
        not_started = [self._held[i] for i, _ in list(child.in_flight)[1:] if i in self._held]
        self._buffer.extendleft(reversed(not_started))
        child.in_flight.clear()
        self.pool.replace(child)
        if job is not None:
            started = time.time() - (now - child.started_at)
            self._pending.append((job, Outcome(job.job_id, False, reason, started, time.time())))

    def _flush(self) -> bool:
        outcomes = self._pending
        groups = finish_calls(self._scripts, self.lease_holder, outcomes)
        try:
            replies = run_pipeline(self._scripts, [call for call, _ in groups])
        except connection.TRANSIENT_ERRORS:
            self._is_flush_in_doubt = True  # some may have been recorded, replies lost
            raise
        results: list[Any] = [None] * len(outcomes)
        for (_, indexes), reply in zip(groups, replies, strict=True):
            for position, index in enumerate(indexes):
                results[index] = reply if isinstance(reply, Exception) else reply[position]
        if self._is_flush_in_doubt:  # before anything is dropped: this may fail too
            for index, (job, outcome) in enumerate(outcomes):
                if results[index] == "stale" and self._was_recorded(job, outcome):
                    results[index] = "recorded by an earlier attempt whose reply was lost"
        self._pending = []
        for (job, outcome), result in zip(outcomes, results, strict=True):
            if isinstance(result, connection.TRANSIENT_ERRORS):
                self._pending.append((job, outcome))  # refused for now (OOM, READONLY)
                continue
            log_outcome(job, outcome, result)
            self._held.pop(job.job_id, None)
            self.processed += 1
        self._is_flush_in_doubt = False
        if self._pending:
            raise next(r for r in results if isinstance(r, connection.TRANSIENT_ERRORS))
        return True

    def _was_recorded(self, job: ClaimedJob, outcome: Outcome) -> bool:
        ended_at = self.connection.hget(keys.for_queue(job.queue).job(job.job_id), "ended_at")
        return ended_at == repr(outcome.ended_at)

    def _heartbeat(self) -> bool:
        now = time.time()
        if now < self._next_heartbeat:
            return False
        self._leases.renew(self._held.values(), now)
        if self._sweeps_left:
            self._leases.give_back_unknown(self.queues, self._held)
            self._sweeps_left -= 1
        busy = [child.job_id for child in self.pool.busy() if child.job_id]
        info: dict[str, str | int | float] = {
            "name": self.name,
            "queues": ",".join(self.queues),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "concurrency": self.concurrency,
            "state": "busy" if busy else "idle",
            "jobs": ",".join(busy),
            "heartbeat": now,
            "processed": self.processed,
        }
        pipe = self.connection.pipeline(transaction=False)
        pipe.hset(keys.worker_key(self.name), mapping=info)  # type: ignore[arg-type]
        pipe.expire(keys.worker_key(self.name), int(self.lease_s * 2) + 1)
        pipe.zadd(keys.WORKERS, {self.name: now})
        pipe.execute()
        self._next_heartbeat = now + self.lease_s / 3  # after a failure: again next round
        return True

    def _release(self, jobs: list[ClaimedJob]) -> None:
        for job in jobs:
            self._held.pop(job.job_id, None)
        self._leases.release(jobs)

    def _shutdown(self, waker: Waker, supervisor: Any) -> None:
        is_waker_gone = waker.stop()
        self._wait(0.0)  # collect outcomes already sent, so that no finished job is put back
        running = [
            self._held[job_id]
            for child in self.pool.busy()
            for job_id, _ in child.in_flight
            if job_id in self._held
        ]
        self.pool.close()
        with contextlib.suppress(redis.RedisError):
            if self._pending:
                self._flush()
        with contextlib.suppress(redis.RedisError):
            self._release(list(self._buffer) + running)
        supervisor.stop()
        with contextlib.suppress(redis.RedisError):
            pipe = self.connection.pipeline(transaction=False)
            pipe.delete(keys.worker_key(self.name))
            pipe.zrem(keys.WORKERS, self.name)
            pipe.execute()
        if is_waker_gone:  # else a late write could land in a reused descriptor
            read_end, write_end = self._wake_read, self._wake_write
            self._wake_read, self._wake_write = -1, -1
            os.close(read_end)
            os.close(write_end)
        logger.info("worker %s: stopped after %d job(s)", self.name, self.processed)
