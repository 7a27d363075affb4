"""A cluster master dies and its replica takes over: workers and schedulers carry on.

The cluster here has a replica per master (about 2 s to start) and its own fixtures, since
the test leaves it changed. Nodes time out after 2 s (``cluster-node-timeout``), so the
replica takes over in about 3-4 s; production clusters usually wait 15 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import jobs
import pytest
import redis
from conftest import Processes, wait_for
from scaleout import Cluster, configured_client, running
from schedulers import start_scheduling_worker, wait_for_holder

from tasks_rq import ConnectionUnavailableError, Job, keys

RESUME_BOUND_S = 8.0
"""How soon after a replica took the dead master's slots over the worker and its scheduler
must have run a job of that queue: their backoff is capped at 2 s and a worker looks for
jobs at least once a second; the rest is room for a busy 2-core CI box."""

T = TypeVar("T")


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from running(Cluster(tmp_path / "cluster", with_replicas=True))


@pytest.fixture()
def redis_url(cluster: Cluster) -> str:
    return cluster.url


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    yield from configured_client(redis_url)


def patiently(call: Callable[[], T], timeout: float = 30) -> T:
    """Return ``call()``, trying again while the cluster refuses or cannot be reached."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (ConnectionUnavailableError, redis.RedisError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_worker_and_scheduler_ride_out_the_failover_of_a_master(
    cluster: Cluster, processes: Processes, client: redis.Redis
) -> None:
    default_key = keys.for_queue("default").queue
    victim = cluster.master_of(default_key)
    other = next(f"q{i}" for i in range(9) if cluster.master_of(f"trq:{{q{i}}}:queue") != victim)
    start_scheduling_worker(processes, "default", other)
    wait_for_holder(client, "default")
    wait_for_holder(client, other)
    assert jobs.add.delay(1, 1).result(timeout=10) == 2

    killed_at = time.time()
    victim.kill()
    wait_for(
        lambda: cluster.master_of(default_key) is not victim,
        timeout=30,
        what="a replica to take the dead master's slots over",
    )
    moved_at = time.time()
    probe: Job[int] = patiently(lambda: jobs.add.after(0.1, 2, 2))
    elsewhere: Job[int] = patiently(lambda: jobs.add.options(queue=other).delay(3, 3))

    assert probe.result(timeout=RESUME_BOUND_S + 10) == 4
    assert elsewhere.result(timeout=10) == 6
    assert probe.ended_at is not None
    resumed_s = probe.ended_at.timestamp() - moved_at
    print(f"cluster failover {moved_at - killed_at:.2f} s, then work resumed {resumed_s:.2f} s")
    assert resumed_s <= RESUME_BOUND_S
