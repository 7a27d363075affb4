"""A Sentinel-guarded primary: the library reaches it by URL and rides out a failover.

Each test starts its own set (one primary, one replica, three sentinels: about 2 s), since a
failover leaves it changed. The failover tests put a worker with its scheduler in the middle
of work (two jobs running, twenty queued, one scheduled to come due during the failover),
make sure the replica has all of it (``WAIT``), fail the primary over, then check that every
job runs exactly once and that a job queued on the new primary runs within
``RECOVERY_BOUND_S`` of the sentinels naming it (on a queue of its own, served by a second
worker that was idle through the failover).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jobs
import pytest
import redis
from conftest import Processes, wait_for
from scaleout import SERVICE_NAME, SentinelSet, configured_client, running
from schedulers import start_scheduling_worker, subscribers, wait_for_holder

from tasks_rq import FinishedJobRegistry, Job, connection

RECOVERY_BOUND_S = 5.0
"""How soon after the sentinels name a new primary a job queued on it must have run. The
library's own share is about 1-2 s (the worker looks for jobs at least once a second, a
Sentinel client asks which server is the primary at most once a second, backoffs are
capped at 2 s); the rest is room for a CI box whose 2 cores serve other test runs."""

RUNNING_S = 5.0
"""How long the jobs running across the failover take: longer than the failover and the
worker's switch to the new primary, so that they end on the new primary."""


@pytest.fixture()
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    yield from running(SentinelSet(tmp_path / "sentinel"))


@pytest.fixture()
def redis_url(sentinel_set: SentinelSet) -> str:
    return sentinel_set.url


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the set's primary, configured as the library's connection."""
    yield from configured_client(redis_url)


def log_of(client: redis.Redis, name: str) -> list[str]:
    return list(client.lrange(f"test:log:{name}", 0, -1))


def named_primaries(sentinel_set: SentinelSet) -> set[int]:
    """Return the primary ports the sentinels name now (more than one while they disagree)."""
    ports = set()
    for node in sentinel_set.sentinels:
        address = node.client().sentinel_get_master_addr_by_name(SERVICE_NAME)
        ports.add(int(address[1]))
    return ports


def is_replicated(sentinel_set: SentinelSet) -> bool:
    """Return whether the replica has acknowledged every write the primary has taken."""
    primary = sentinel_set.node_on(sentinel_set.primary_port())
    replica = next(node for node in sentinel_set.data if node is not primary)
    written = int(primary.client().info("replication")["master_repl_offset"])
    return int(replica.client().info("replication")["slave_repl_offset"]) >= written


def test_jobs_are_stored_on_the_primary_and_children_get_the_sentinel_url(
    sentinel_set: SentinelSet, processes: Processes, client: redis.Redis, redis_url: str
) -> None:
    job = jobs.add.delay(1, 2)
    primary = sentinel_set.node_on(sentinel_set.primary_port()).client()
    assert primary.hget(job.key, "task") == "jobs.add"
    assert connection.url_of(client) == redis_url
    start_scheduling_worker(processes)
    assert job.result(timeout=10) == 3
    assert jobs.add.after(0.2, 2, 2).result(timeout=10) == 4


class Work:
    """Jobs in every state, made while a worker (concurrency 2) and its scheduler run."""

    def __init__(
        self, sentinel_set: SentinelSet, processes: Processes, client: redis.Redis
    ) -> None:
        start_scheduling_worker(processes, "-c", "2")
        processes.worker("probe")  # idle until the probe after the failover
        wait_for_holder(client)
        wait_for(lambda: subscribers(client) == 2, what="the worker and scheduler to listen")
        wait_for(lambda: subscribers(client, "probe") == 1, what="the probe worker to listen")
        self.running = [jobs.sleep_for.delay(RUNNING_S, f"running-{i}") for i in range(2)]
        wait_for(
            lambda: all(log_of(client, f"running-{i}") == ["start"] for i in range(2)),
            what="both jobs to start",
        )
        self.queued = jobs.count_run.map([f"queued-{i}" for i in range(20)])
        self.scheduled = jobs.record.after(1.0, "scheduled")
        wait_for(lambda: is_replicated(sentinel_set), what="the replica to hold every write")

    def assert_each_ran_once(self, client: redis.Redis) -> None:
        for job in self.running:
            assert job.result(timeout=30) == RUNNING_S
        for i in range(2):
            assert log_of(client, f"running-{i}") == ["start", "end"]
        assert self.scheduled.result(timeout=10) > 0
        assert len(log_of(client, "scheduled")) == 1
        wait_for(lambda: len(FinishedJobRegistry("default")) == 23, what="every job to finish")
        runs = {name: int(count) for name, count in client.hgetall("test:runs").items()}
        assert runs == {f"queued-{i}": 1 for i in range(20)}


def fail_over(
    sentinel_set: SentinelSet, redis_url: str, trigger: Callable[[int], None]
) -> tuple[float, float]:
    """Fail the primary over with ``trigger``; return the sentinels' and the library's time.

    The first is from the trigger until every sentinel names the new primary; the second
    from then until a job queued on the new primary has run.
    """
    old = sentinel_set.primary_port()
    triggered_at = time.time()
    trigger(old)
    wait_for(
        lambda: len(ports := named_primaries(sentinel_set)) == 1 and old not in ports,
        timeout=30,
        what="every sentinel to name the new primary",
    )
    named_at = time.time()
    connection.configure(url=redis_url)  # a new client asks the sentinels afresh
    probe: Job[int] = jobs.add.options(queue="probe").delay(1, 2)
    assert probe.result(timeout=RECOVERY_BOUND_S + 5) == 3
    assert probe.ended_at is not None
    return named_at - triggered_at, probe.ended_at.timestamp() - named_at


def test_graceful_failover_mid_work_runs_each_job_once_and_work_resumes_quickly(
    sentinel_set: SentinelSet, processes: Processes, client: redis.Redis, redis_url: str
) -> None:
    work = Work(sentinel_set, processes, client)
    sentinels_s, library_s = fail_over(
        sentinel_set,
        redis_url,
        lambda _: sentinel_set.sentinels[0].client().sentinel_failover(SERVICE_NAME),
    )
    print(f"graceful failover: sentinels {sentinels_s:.2f} s, then work resumed {library_s:.2f} s")
    assert library_s <= RECOVERY_BOUND_S
    work.assert_each_ran_once(connection.get_client())


def test_primary_killed_mid_work_loses_no_replicated_job_and_work_resumes_quickly(
    sentinel_set: SentinelSet, processes: Processes, client: redis.Redis, redis_url: str
) -> None:
    work = Work(sentinel_set, processes, client)
    sentinels_s, library_s = fail_over(
        sentinel_set, redis_url, lambda port: sentinel_set.node_on(port).kill()
    )
    print(f"primary SIGKILLed: sentinels {sentinels_s:.2f} s, then work resumed {library_s:.2f} s")
    assert library_s <= RECOVERY_BOUND_S
    work.assert_each_ran_once(connection.get_client())
