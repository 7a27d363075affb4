"""Stopping a worker: a second signal or --shutdown-timeout puts running jobs back, retries kept."""

from __future__ import annotations

import signal
import time

import jobs
import redis
from conftest import Processes, wait_for
from faults import Watched, starts

from tasks_rq import JobStatus, Queue, StartedJobRegistry


def start_worker(processes: Processes, *args: str) -> Watched:
    worker = Watched(processes.worker(*args))
    worker.wait_for_line("started on")
    return worker


def test_two_shutdowns_during_a_job_spend_no_retry_and_it_completes_later(
    processes: Processes, client: redis.Redis
) -> None:
    job = jobs.sleep_for.options(retry=1).delay(2.0, "deploys")
    for deploy in (1, 2):
        worker = start_worker(processes, "--shutdown-timeout", "0.3")
        wait_for(lambda n=deploy: starts(client, "deploys").count("start") == n, what="a start")
        worker.kill_group(signal.SIGTERM)
        assert worker.wait_exit() == 0
        assert job.status is JobStatus.QUEUED
        assert job.retries_left == 1

    start_worker(processes)

    assert job.result(timeout=20) == 2.0
    assert job.retries_left == 1
    assert starts(client, "deploys") == ["start", "start", "start", "end"]


def test_second_sigterm_puts_the_running_job_back_at_the_front_without_spending_a_retry(
    processes: Processes, client: redis.Redis
) -> None:
    worker = start_worker(processes)
    job = jobs.sleep_for.options(retry=1).delay(30, "twice")
    wait_for(lambda: starts(client, "twice") == ["start"], what="the job to start")
    behind = jobs.add.delay(1, 1)

    worker.kill_group(signal.SIGTERM)
    worker.wait_for_line("finishing running jobs")
    worker.kill_group(signal.SIGTERM)

    assert worker.wait_exit(timeout=10) == 0
    assert Queue("default").job_ids() == [job.id, behind.id]
    assert job.status is JobStatus.QUEUED and job.retries_left == 1
    assert job not in StartedJobRegistry("default")
    assert worker.count("gave back 1 job(s)") == 1


def test_shutdown_timeout_puts_the_running_job_back_once_it_passes(
    processes: Processes, client: redis.Redis
) -> None:
    worker = start_worker(processes, "--shutdown-timeout", "1")
    job = jobs.sleep_for.options(retry=2).delay(30, "timeout")
    wait_for(lambda: starts(client, "timeout") == ["start"], what="the job to start")

    worker.kill_group(signal.SIGTERM)
    signalled = time.monotonic()
    assert worker.wait_exit(timeout=15) == 0

    # Honest bounds: the timeout itself, plus up to 5 s on a loaded machine to kill the job
    # and give it back.
    assert 1.0 <= time.monotonic() - signalled <= 6.0
    assert job.status is JobStatus.QUEUED and job.retries_left == 2
    assert Queue("default").job_ids() == [job.id]


def test_sigint_finishes_the_running_job_like_sigterm(
    processes: Processes, client: redis.Redis
) -> None:
    worker = start_worker(processes)
    job = jobs.sleep_for.delay(1.0, "ctrl-c")
    wait_for(lambda: starts(client, "ctrl-c") == ["start"], what="the job to start")

    worker.kill_group(signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group

    assert worker.wait_exit() == 0
    assert job.status is JobStatus.FINISHED
    assert starts(client, "ctrl-c") == ["start", "end"]
