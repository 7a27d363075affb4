"""Redis restarts, stalls and cut connections: workers, schedulers and waiters carry on."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jobs
import pytest
import redis
from conftest import Processes, RedisServer, wait_for
from faults import CuttingProxy, Watched, starts

from tasks_rq import JobStatus, connection, keys
from tasks_rq import queue as queue_module


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server that keeps its data across restarts (append-only file)."""
    made = RedisServer(tmp_path, extra=["--appendonly", "yes", "--appendfsync", "always"])
    made.start()
    saved = dict(connection._state)
    connection.configure(url=made.url)
    queue_module._known_queues.clear()
    yield made
    connection._state.update(saved)
    made.stop()


@pytest.fixture()
def processes(server: RedisServer) -> Iterator[Processes]:
    made = Processes(server.url)
    yield made
    made.stop_all()


@pytest.fixture()
def client(server: RedisServer) -> Iterator[redis.Redis]:
    made = connection.connect(server.url)
    yield made
    made.close()


@pytest.fixture()
def proxy(server: RedisServer) -> Iterator[CuttingProxy]:
    made = CuttingProxy(server.port)
    yield made
    made.close()


@pytest.fixture()
def proxied(proxy: CuttingProxy) -> Iterator[Processes]:
    """Processes that reach Redis through ``proxy``."""
    made = Processes(proxy.url)
    yield made
    made.stop_all()


def start_worker(processes: Processes, *args: str) -> Watched:
    worker = Watched(processes.worker(*args))
    worker.wait_for_line("started on")
    return worker


def recorded_starts(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(entry) for entry in client.smembers("chaos:starts")]  # type: ignore[union-attr]


def test_worker_and_scheduler_carry_on_after_redis_restarts_losing_and_repeating_nothing(
    server: RedisServer, processes: Processes, client: redis.Redis
) -> None:
    worker = start_worker(processes, "--with-scheduler", "--lease", "1.5", "--name", "w1")
    made = [
        jobs.chaos_step.options(job_id=f"r{i}").delay(f"r{i}", "default", 0.1) for i in range(30)
    ]
    late = jobs.chaos_step.options(job_id="late").after(3.0, "late", "default", 0.0)
    wait_for(lambda: len(recorded_starts(client)) >= 5, what="jobs to be running")

    server.stop()
    worker.wait_for_line("Redis unavailable")
    down = time.monotonic()
    wait_for(lambda: time.monotonic() - down >= 2.0, what="an outage of several retries")
    server.start()

    for job in [*made, late]:
        assert job.result(timeout=30) == job.id
    assert sorted(entry["id"] for entry in recorded_starts(client)) == sorted(
        job.id for job in [*made, late]
    )
    assert worker.count("w1: Redis unavailable") == 1  # one line per outage, not per attempt
    assert worker.count("w1: Redis reachable again") == 1


def test_stall_longer_than_the_lease_does_not_requeue_running_jobs(
    server: RedisServer, processes: Processes, client: redis.Redis
) -> None:
    start_worker(processes, "--with-scheduler", "--lease", "1.5")
    job = jobs.sleep_for.delay(3.0, "stall")
    wait_for(lambda: starts(client, "stall") == ["start"], what="the job to start")

    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    stalled = time.monotonic()
    wait_for(lambda: time.monotonic() - stalled >= 3.0, what="a stall twice the lease")
    server.process.send_signal(signal.SIGCONT)

    assert job.result(timeout=20) == 3.0
    assert starts(client, "stall") == ["start", "end"]
    assert client.hget(job.key, "recoveries") is None


def test_scheduler_and_worker_carry_on_after_their_connections_are_cut(
    server: RedisServer, processes: Processes, client: redis.Redis
) -> None:
    worker = start_worker(processes, "--with-scheduler", "--name", "cut")
    worker.wait_for_line("took the lock")
    job = jobs.add.after(1.5, 2, 3)

    assert client.client_kill_filter(_type="normal") >= 1

    assert job.result(timeout=15) == 5
    assert worker.count("Redis unavailable") <= 1


def test_waker_and_scheduler_resubscribe_after_pubsub_connections_are_cut(
    server: RedisServer, processes: Processes, client: redis.Redis
) -> None:
    start_worker(processes, "--with-scheduler")
    channel = keys.wake_channel("default")

    def subscribers() -> set[str]:
        if dict(client.pubsub_numsub(channel))[channel] != 2:
            return set()
        return {entry["id"] for entry in client.client_list(_type="pubsub")}

    before = wait_for(subscribers, what="the waker and the scheduler to subscribe")

    assert client.client_kill_filter(_type="pubsub") == 2
    after = wait_for(lambda: subscribers() - before, timeout=10, what="new subscriptions")
    assert len(after) == 2 and not after & before

    assert jobs.add.delay(1, 2).result(timeout=10) == 3


def test_job_result_waits_through_a_redis_restart(
    server: RedisServer, processes: Processes, client: redis.Redis
) -> None:
    job = jobs.add.delay(20, 22)
    results: list[Any] = []
    waiter = threading.Thread(target=lambda: results.append(job.result(timeout=30)))
    waiter.start()
    channel = keys.done_channel("default", job.id)
    wait_for(lambda: dict(client.pubsub_numsub(channel))[channel] == 1, what="the waiter")

    server.stop()
    server.start()
    start_worker(processes)

    waiter.join(timeout=30)
    assert results == [42]
    assert job.status is JobStatus.FINISHED


def test_claim_whose_reply_was_lost_is_given_back_without_counting_a_recovery(
    proxy: CuttingProxy, proxied: Processes, client: redis.Redis
) -> None:
    worker = start_worker(proxied, "--name", "lossy")
    proxy.lose_reply_containing("lost-claim")

    job = jobs.add.options(job_id="lost-claim").delay(1, 2)

    assert job.result(timeout=15) == 3
    assert proxy.cuts == 1
    assert worker.count("gave back 1 job(s) of default claimed by a call whose reply was lost")
    assert client.hget(job.key, "recoveries") is None
    assert client.hget(job.key, "claims") == "2"  # claimed, reply lost, given back, claimed


def test_finish_whose_reply_was_lost_is_recorded_once_and_not_called_a_lost_lease(
    proxy: CuttingProxy, proxied: Processes, client: redis.Redis
) -> None:
    worker = start_worker(proxied)
    proxy.lose_reply_containing("finished")

    job = jobs.add.delay(2, 2)

    assert job.result(timeout=15) == 4
    worker.wait_for_line("recorded by an earlier attempt whose reply was lost")
    assert proxy.cuts == 1
    assert worker.count("lease lost") == 0
    assert job.runs == 1
