"""The inspection library behind ``tasks-rq info``, ``jobs`` and ``purge``, against real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from tasks_rq import FailedJobRegistry, JobStatus, NoSuchQueueError, Queue, inspection
from tasks_rq import keys as key_names

import jobs


def test_purge_stops_after_the_jobs_present_when_it_began(client: redis.Redis) -> None:
    old = jobs.add.map(range(600), range(600))  # two batches of inspection.BATCH_SIZE
    new: list[str] = []

    def enqueue_during_the_walk(count: int) -> None:
        if not new:
            new.extend(job.id for job in jobs.add.map(range(5), range(5)))

    deleted = inspection.purge(client, "default", "queued", enqueue_during_the_walk)

    assert deleted == len(old)
    assert sorted(Queue("default").job_ids()) == sorted(new)


def test_purge_reports_progress_once_per_batch(client: redis.Redis) -> None:
    jobs.add.map(range(inspection.BATCH_SIZE + 1), range(inspection.BATCH_SIZE + 1))
    steps: list[int] = []

    inspection.purge(client, "default", "queued", steps.append)

    assert steps == [inspection.BATCH_SIZE, 1]


def test_purge_of_a_registry_deletes_the_run_histories_too(client: redis.Redis) -> None:
    job = jobs.add.after(3600, 1, 1)
    history = key_names.for_queue("default").history(job.id)
    client.rpush(history, "{}")

    assert inspection.purge(client, "default", "scheduled") == 1

    assert not client.exists(job.key) and not client.exists(history)


def test_requeue_reports_a_vanished_job_and_drops_its_stale_entry(client: redis.Redis) -> None:
    jobs.add.delay(1, 1)  # makes the queue known
    client.zadd(key_names.for_queue("default").failed, {"ghost": time.time() + 60})

    assert inspection.requeue(client, "default", ["ghost"]) == ["missing"]

    assert "ghost" not in FailedJobRegistry("default")


def test_requeue_leaves_a_job_that_is_not_failed_as_it_is(client: redis.Redis) -> None:
    job = jobs.add.after(3600, 1, 1)

    assert inspection.requeue(client, "default", [job.id]) == ["scheduled"]

    assert job.status is JobStatus.SCHEDULED
    assert len(Queue("default")) == 0


def test_list_jobs_skips_jobs_whose_hash_is_gone(client: redis.Redis) -> None:
    kept, gone = jobs.add.delay(1, 1), jobs.add.delay(2, 2)
    client.delete(gone.key)

    listed = inspection.list_jobs(client, "default")

    assert [summary.id for summary in listed] == [kept.id]


def test_list_jobs_refuses_an_unknown_queue(client: redis.Redis) -> None:
    with pytest.raises(NoSuchQueueError, match="no queue 'nope'"):
        inspection.list_jobs(client, "nope")


def test_worker_whose_heartbeat_expired_is_shown_as_lost(client: redis.Redis) -> None:
    last_seen = time.time() - 120
    client.zadd(key_names.WORKERS, {"gone-worker": last_seen})

    (worker,) = inspection.workers(client)

    assert (worker.name, worker.state) == ("gone-worker", "lost")
    assert worker.heartbeat is not None
    assert abs(worker.heartbeat.timestamp() - last_seen) < 0.001


def test_queue_stats_count_every_status(client: redis.Redis) -> None:
    jobs.add.delay(1, 1)
    jobs.add.after(3600, 1, 1).cancel()
    jobs.add.after(3600, 2, 2)

    (stats,) = inspection.queue_stats(client, ["default"])

    assert stats.counts == {
        "queued": 1, "scheduled": 1, "started": 0, "finished": 0, "failed": 0, "canceled": 1
    }
    assert stats.scheduler is None
