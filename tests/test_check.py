"""tasks-rq check: every job in exactly one place; corrupted data is found and repaired."""

from __future__ import annotations

import json
import time

import jobs
import redis
from conftest import Processes

from tasks_rq import JobStatus, Queue, ScheduledJobRegistry
from tasks_rq.check import check
from tasks_rq.job import scripts_for
from tasks_rq.keys import for_queue

NAMES = for_queue("default")


def kinds(client: redis.Redis, repair: bool = False) -> list[tuple[str, str | None]]:
    return [(p.kind, p.place) for p in check(client, repair=repair).problems]


def test_consistent_jobs_are_clean_and_counted_per_place(client: redis.Redis) -> None:
    jobs.add.delay(1, 2)
    jobs.add.delay(3, 4)
    jobs.add.after(60, 5, 6)
    jobs.add.after(60, 7, 8).cancel()
    now = time.time()
    scripts_for(client).claim(
        keys=[NAMES.queue, NAMES.started, NAMES.job_prefix], args=[now, now + 30, 1, "w/1"]
    )

    report = check(client)

    assert report.is_clean and report.problems == []
    counts = report.queues["default"].counts
    assert counts == {
        "queued": 1,
        "scheduled": 1,
        "started": 1,
        "finished": 0,
        "failed": 0,
        "canceled": 1,
        "jobs": 4,
    }


def test_entries_whose_job_is_gone_are_dangling_and_repair_removes_them(
    client: redis.Redis,
) -> None:
    client.zadd(NAMES.scheduled, {"ghost": time.time() + 60})
    client.lpush(NAMES.queue, "phantom")

    assert sorted(kinds(client)) == [("dangling_entry", "queued"), ("dangling_entry", "scheduled")]
    assert check(client, repair=True).is_clean
    assert client.zcard(NAMES.scheduled) == 0 and client.llen(NAMES.queue) == 0
    assert check(client).problems == []


def test_queued_job_in_no_place_is_queued_again(client: redis.Redis) -> None:
    job = jobs.add.delay(1, 2)
    client.lrem(NAMES.queue, 0, job.id)

    assert kinds(client) == [("in_no_place", None)]
    report = check(client, repair=True)

    assert [p.action for p in report.problems] == ["queued"]
    assert Queue("default").job_ids() == [job.id]


def test_started_job_that_lost_its_lease_entry_is_queued_again(client: redis.Redis) -> None:
    job = jobs.add.delay(1, 2)
    now = time.time()
    scripts_for(client).claim(
        keys=[NAMES.queue, NAMES.started, NAMES.job_prefix], args=[now, now + 30, 1, "w/1"]
    )
    client.zrem(NAMES.started, job.id)

    check(client, repair=True)

    assert job.status is JobStatus.QUEUED
    assert Queue("default").job_ids() == [job.id]


def test_job_also_in_another_place_keeps_only_the_place_its_status_names(
    client: redis.Redis,
) -> None:
    job = jobs.add.after(60, 1, 2)
    client.lpush(NAMES.queue, job.id)

    assert kinds(client) == [("in_extra_place", "queued")]
    check(client, repair=True)

    assert Queue("default").job_ids() == []
    assert job in ScheduledJobRegistry("default")


def test_job_in_the_wrong_place_moves_to_the_place_its_status_names(client: redis.Redis) -> None:
    job = jobs.add.after(60, 1, 2)
    client.hset(job.key, "status", "queued")

    assert kinds(client) == [("in_wrong_place", "scheduled")]
    report = check(client, repair=True)

    assert [p.action for p in report.problems] == ["removed from scheduled; queued"]
    assert job not in ScheduledJobRegistry("default")
    assert Queue("default").job_ids() == [job.id]


def test_duplicate_queue_entry_is_reported_and_one_entry_kept(client: redis.Redis) -> None:
    job = jobs.add.delay(1, 2)
    later = jobs.add.delay(3, 4)
    client.lpush(NAMES.queue, job.id)

    assert kinds(client) == [("duplicate_entry", None)]
    check(client, repair=True)

    assert Queue("default").job_ids() == [job.id, later.id]


def test_ended_job_in_no_place_goes_back_to_its_registry_with_its_expiry(
    client: redis.Redis,
) -> None:
    job = jobs.add.after(60, 1, 2)
    client.zrem(NAMES.scheduled, job.id)
    client.hset(job.key, "status", "failed")
    client.expire(job.key, 100)

    check(client, repair=True)

    expiry = client.zscore(NAMES.failed, job.id)
    assert expiry is not None and 95 <= expiry - time.time() <= 100


def test_expired_entries_of_ended_jobs_are_counted_not_reported(client: redis.Redis) -> None:
    client.zadd(NAMES.finished, {"gone-a-moment-ago": time.time() - 1})
    client.zadd(NAMES.failed, {"gone-long-before-expiry": time.time() + 3600})

    report = check(client)

    assert report.queues["default"].expired == 1
    assert kinds(client) == [("dangling_entry", "failed")]


def test_run_history_without_its_job_is_deleted_by_repair(client: redis.Redis) -> None:
    client.lpush(NAMES.history("gone"), json.dumps({"outcome": "ok"}))

    assert kinds(client) == [("orphan_history", None)]
    check(client, repair=True)

    assert not client.exists(NAMES.history("gone"))


def test_job_without_a_known_status_is_reported_and_left_alone(client: redis.Redis) -> None:
    job = jobs.add.delay(1, 2)
    client.hset(job.key, "status", "lost-in-space")

    report = check(client, repair=True)

    assert [(p.kind, p.action) for p in report.problems] == [("bad_status", "")]
    assert not report.is_clean
    assert client.hget(job.key, "status") == "lost-in-space"
    assert Queue("default").job_ids() == [job.id]


def test_check_reads_queues_longer_than_one_batch(client: redis.Redis) -> None:
    jobs.add.map(range(2500), range(2500))

    report = check(client)

    assert report.is_clean
    assert report.queues["default"].counts["queued"] == 2500


def test_cli_check_exits_non_zero_until_repaired_and_says_what_it_did(
    processes: Processes, client: redis.Redis
) -> None:
    job = jobs.add.delay(1, 2)
    client.lrem(NAMES.queue, 0, job.id)

    found = processes.run("check")
    repaired = processes.run("check", "--repair")
    after = processes.run("check", "--json")

    assert found.returncode == 1 and "in_no_place" in found.stdout
    assert repaired.returncode == 0 and "1 repaired" in repaired.stdout
    assert after.returncode == 0 and json.loads(after.stdout)["clean"] is True
