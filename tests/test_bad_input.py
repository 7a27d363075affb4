"""Job hashes written by hand with fields missing or garbage: each fails clearly, alone.

One burst worker runs every bad job of this module at once, next to a good job; each test
then reads what became of one of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jobs
import pytest
import redis
from conftest import Processes, output_of

from tasks_rq import FailedJobRegistry, Job, JobStatus, Repeat, connection
from tasks_rq import queue as queue_module
from tasks_rq.check import check
from tasks_rq.keys import for_queue

BAD_JOBS: dict[str, tuple[dict[str, str], str]] = {
    "no-task": ({"args": "[1, 2]"}, "it has no 'task' field"),
    "args-not-json": ({"args": "{not json"}, "cannot be decoded with serializer 'json'"),
    "args-not-a-list": ({"args": '{"a": 1}'}, "args must decode to a list"),
    "kwargs-not-a-dict": ({"kwargs": "[1]"}, "kwargs to a dict"),
    "timeout-garbage": ({"timeout": "abc"}, "field 'timeout' is 'abc'"),
    "timeout-negative": ({"timeout": "-5"}, "field 'timeout' is '-5'"),
    "unknown-serializer": ({"serializer": "yaml"}, "unknown serializer 'yaml'"),
    "repeat-counter-garbage": (
        {"repeat": '{"times": 2, "interval": [0]}', "repeats_left": "two"},
        "field 'repeats_left' is 'two'",
    ),
    "repeat-policy-missing": ({"repeats_left": "2"}, "field 'repeat' is missing"),
    "retry-policy-garbage": (
        {"retry": "not json", "retries": "1", "retries_left": "1"},
        "field 'retry' is 'not json'",
    ),
    "result-ttl-garbage": ({"result_ttl": "1e999"}, "field 'result_ttl' is '1e999'"),
    "runs-garbage": ({"runs": "3.5"}, "field 'runs' is '3.5'"),
}


def _write_job(client: redis.Redis, job_id: str, changes: dict[str, str]) -> None:
    names = for_queue("default")
    fields = {"task": "jobs.add", "status": "queued", "args": "[1, 2]", **changes}
    if "no-task" in job_id:
        del fields["task"]
    client.hset(names.job(job_id), mapping=fields)
    client.lpush(names.queue, job_id)


@pytest.fixture(scope="module")
def aftermath(redis_url: str) -> Iterator[dict[str, Any]]:
    """Run one burst worker over every bad job and a good one; return what became of them."""
    client = connection.connect(redis_url)
    client.flushdb()
    connection.configure(url=redis_url)
    queue_module._known_queues.clear()
    names = for_queue("default")
    for job_id, (changes, _) in BAD_JOBS.items():
        _write_job(client, job_id, changes)
    _write_job(client, "claims-garbage", {"claims": "x"})
    client.set(names.job("not-a-hash"), "junk")
    client.lpush(names.queue, "not-a-hash")
    good = jobs.add.delay(20, 22)
    processes = Processes(redis_url)
    try:
        worker = processes.worker("--burst")
        output = output_of(worker)
    finally:
        processes.stop_all()
    yield {
        "exit_code": worker.returncode,
        "output": output,
        "jobs": {
            job_id: client.hgetall(names.job(job_id)) for job_id in [*BAD_JOBS, "claims-garbage"]
        },
        "failed": set(FailedJobRegistry("default").get_job_ids()),
        "good": good.result(timeout=5),
        "not_a_hash": client.get(names.job("not-a-hash")),
        "queue": client.lrange(names.queue, 0, -1),
        "check": check(client),
    }
    client.close()


@pytest.mark.parametrize("job_id", list(BAD_JOBS))
def test_malformed_job_fails_with_a_reason_naming_the_problem(
    aftermath: dict[str, Any], job_id: str
) -> None:
    fields = aftermath["jobs"][job_id]
    assert fields["status"] == "failed"
    assert BAD_JOBS[job_id][1] in fields["error"]
    assert job_id in aftermath["failed"]


def test_malformed_jobs_neither_stop_the_worker_nor_touch_the_good_job(
    aftermath: dict[str, Any],
) -> None:
    assert aftermath["exit_code"] == 0
    assert aftermath["good"] == 42
    assert "Traceback" not in aftermath["output"]


def test_garbage_claim_counter_is_reset_and_the_job_runs(aftermath: dict[str, Any]) -> None:
    fields = aftermath["jobs"]["claims-garbage"]
    assert (fields["status"], fields["claims"], fields["result"]) == ("finished", "1", "3")


def test_queue_entry_whose_key_is_not_a_hash_is_dropped_and_the_key_left_alone(
    aftermath: dict[str, Any],
) -> None:
    assert aftermath["queue"] == []
    assert aftermath["not_a_hash"] == "junk"
    assert "job not-a-hash: its key in queue default is not a job hash" in aftermath["output"]


def test_bad_jobs_leave_every_job_in_exactly_one_place(aftermath: dict[str, Any]) -> None:
    report = aftermath["check"]
    assert report.problem_counts() == {"not_a_hash": 1}


def test_job_with_bytes_that_are_not_utf8_fails_alone(
    processes: Processes, client: redis.Redis
) -> None:
    raw = redis.Redis.from_url(processes.redis_url)
    names = for_queue("default")
    raw.hset(names.job("binary"), mapping={"task": "jobs.echo", "args": b"\xff\xfe[1]",
                                           "status": "queued", "created_at": time.time()})
    raw.lpush(names.queue, "binary")
    good = jobs.add.delay(1, 2)
    worker = processes.worker("--burst")
    output = output_of(worker)
    assert worker.returncode == 0, output
    assert good.result(timeout=5) == 3
    assert Job.fetch("binary", "default").status is JobStatus.FAILED


def test_job_whose_counters_exceed_its_policy_fails_alone(
    processes: Processes, client: redis.Redis
) -> None:
    bad = jobs.add.options(repeat=Repeat(1, 0)).delay(1, 1)
    client.hset(for_queue("default").job(bad.id), "repeats_left", 50)
    good = jobs.add.delay(2, 2)
    worker = processes.worker("--burst")
    output = output_of(worker)
    assert worker.returncode == 0, output
    assert good.result(timeout=5) == 4
    assert bad.status is JobStatus.FAILED
    assert "more than its policy allows" in (bad.error or "")
