"""Jobs of dead workers: leases expire; the lock holder requeues them or fails them as abandoned."""

from __future__ import annotations

import os
import signal
import time

import jobs
import redis
from conftest import Processes, wait_for
from faults import Watched, is_running, starts

from tasks_rq import CanceledJobRegistry, FailedJobRegistry, JobStatus, Queue, Repeat, Scheduler
from tasks_rq.job import scripts_for
from tasks_rq.keys import for_queue
from tasks_rq.scheduler import LOCK_ROUND_S, LOCK_TTL_S, MAINTENANCE_S, MAX_RECOVERIES

LEASE_S = 3.0
# A dead worker's job is requeued once its lease ran out and a scheduler holds the queue's
# lock (at most a lock TTL after the dead worker's own scheduler died with it), at the next
# maintenance pass. Tolerance for a loaded 2-core machine: 2 s.
RECOVERY_BOUND_S = max(LEASE_S, LOCK_TTL_S + LOCK_ROUND_S) + MAINTENANCE_S + 2.0


def start_worker(processes: Processes, name: str, *args: str) -> Watched:
    worker = Watched(
        processes.worker("--with-scheduler", "--lease", str(LEASE_S), "--name", name, *args)
    )
    worker.wait_for_line("started on")
    return worker


def claim_with_expired_lease(client: redis.Redis, holder: str = "gone/1") -> None:
    names = for_queue("default")
    now = time.time()
    scripts_for(client).claim(
        keys=[names.queue, names.started, names.job_prefix], args=[now, now - 1, 1, holder]
    )


def test_job_of_a_killed_worker_runs_again_within_the_lease_bound(
    processes: Processes, client: redis.Redis
) -> None:
    first = start_worker(processes, "first")
    job = jobs.sleep_for.delay(30, "long")
    wait_for(lambda: starts(client, "long") == ["start"], what="the job to start")
    started = time.monotonic()
    start_worker(processes, "second")
    wait_for(lambda: time.monotonic() - started >= 5, timeout=10, what="5 s into the job")
    assert starts(client, "long") == ["start"]  # renewals kept a 3 s lease alive for 5 s

    first.kill_group()
    killed = time.monotonic()
    wait_for(lambda: len(starts(client, "long")) == 2, RECOVERY_BOUND_S + 10, "a second start")

    assert time.monotonic() - killed <= RECOVERY_BOUND_S
    assert job.status is JobStatus.STARTED
    assert (job.worker_name or "").startswith("second/")
    assert client.hget(job.key, "recoveries") == "1"


def test_killed_repeating_job_keeps_its_remaining_repeats(
    processes: Processes, client: redis.Redis
) -> None:
    workers = {name: start_worker(processes, name) for name in ("one", "two")}
    job = jobs.sleep_for.repeat(2, 0, 1.0, "rep")
    wait_for(lambda: len(starts(client, "rep")) >= 3, what="the second run to start")
    job.refresh()
    assert job.runs == 1 and job.repeats_left == 1

    workers[(job.worker_name or "").split("/")[0]].kill_group()

    assert job.result(timeout=RECOVERY_BOUND_S + 10) == 1.0
    assert job.runs == 3 and job.repeats_left == 0
    assert starts(client, "rep").count("start") == 4  # the second run ran twice


def test_expired_lease_requeues_the_job_at_the_front_counting_a_recovery(
    client: redis.Redis,
) -> None:
    job = jobs.add.options(retry=1).delay(1, 2)
    behind = jobs.add.delay(3, 4)
    claim_with_expired_lease(client)

    requeued, abandoned = Scheduler(["default"], client).recover("default")

    assert (requeued, abandoned) == ([job.id], [])
    assert Queue("default").job_ids() == [job.id, behind.id]
    assert job.status is JobStatus.QUEUED
    assert client.hget(job.key, "recoveries") == "1"
    assert job.retries_left == 1


def test_every_expired_lease_of_a_big_worker_is_recovered_in_one_pass(
    client: redis.Redis,
) -> None:
    jobs.add.map(range(250), range(250))
    names = for_queue("default")
    now = time.time()
    scripts_for(client).claim(
        keys=[names.queue, names.started, names.job_prefix], args=[now, now - 1, 250, "big/1"]
    )

    requeued, _ = Scheduler(["default"], client).recover("default")

    assert len(requeued) == 250 and len(Queue("default")) == 250


def test_job_recovered_too_often_fails_as_abandoned(client: redis.Redis) -> None:
    job = jobs.add.delay(1, 2)
    scheduler = Scheduler(["default"], client)
    for _ in range(MAX_RECOVERIES):
        claim_with_expired_lease(client)
        scheduler.recover("default")
    claim_with_expired_lease(client)

    assert scheduler.recover("default") == ([], [job.id])
    assert job.status is JobStatus.FAILED
    assert "abandoned" in (job.error or "")
    assert job in FailedJobRegistry("default")


def test_job_process_exits_when_its_worker_is_killed(
    processes: Processes, client: redis.Redis
) -> None:
    worker = start_worker(processes, "doomed")
    jobs.sleep_and_report_pid.delay("pid", 30)
    child_pid = int(wait_for(lambda: starts(client, "pid"), what="the job to start")[0])

    os.kill(worker.pid, signal.SIGKILL)  # the worker alone, as the out-of-memory killer does
    worker.process.wait(timeout=10)

    wait_for(lambda: not is_running(child_pid), timeout=5, what="the job's process to exit")


def test_job_canceled_while_its_worker_died_ends_canceled(client: redis.Redis) -> None:
    job = jobs.add.options(repeat=Repeat(3, 0)).delay(1, 2)
    names = for_queue("default")
    client.rpop(names.queue)
    client.zadd(names.started, {job.id: 0})  # a lease that expired long ago
    client.hset(names.job(job.id), mapping={"status": "started", "cancel_requested": "1"})
    requeued, abandoned = Scheduler(["default"], client).recover("default")
    assert (requeued, abandoned) == ([], [])
    assert job.status is JobStatus.CANCELED
    assert job in CanceledJobRegistry("default")
    assert job not in Queue("default")
