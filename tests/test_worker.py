"""Real worker processes: jobs run, outcomes are stored, and bad jobs never take it down."""

from __future__ import annotations

import os
import signal

import pytest
import redis

from conftest import Processes, output_of, wait_for
from tasks_rq import (
    FailedJobRegistry,
    FinishedJobRegistry,
    Job,
    JobFailedError,
    JobStatus,
    JobTimeoutError,
    Queue,
)
from tasks_rq.queue import JobRequest
from tasks_rq.options import JobOptions

import jobs


def test_burst_worker_runs_jobs_and_stores_results(processes: Processes) -> None:
    made = [jobs.add.delay(i, i) for i in range(20)]
    out = output_of(processes.worker("--burst"))
    assert [job.result(timeout=5) for job in made] == [2 * i for i in range(20)]
    assert all(job in FinishedJobRegistry("default") for job in made)
    assert out.count("finished in") == 20


def test_result_waits_for_a_running_worker(processes: Processes) -> None:
    processes.worker()
    job = jobs.add.delay(20, 22)
    assert job.result(timeout=10) == 42
    assert job.started_at is not None and job.ended_at is not None
    assert job.started_at <= job.ended_at


def test_result_times_out_when_nothing_runs(client: redis.Redis) -> None:
    job = jobs.add.delay(1, 1)
    with pytest.raises(JobTimeoutError):
        job.result(timeout=0.2)


def test_failed_job_keeps_remote_traceback(processes: Processes) -> None:
    job = jobs.fail.delay("it broke")
    output_of(processes.worker("--burst"))
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout=5)
    assert "RuntimeError: it broke" in caught.value.remote_traceback
    assert "jobs.py" in caught.value.remote_traceback
    assert job in FailedJobRegistry("default")


@pytest.mark.parametrize(
    ("task_name", "reason"),
    [
        ("exit_hard", "exited with code 3"),
        ("abort", "killed by SIGABRT"),
        ("raise_system_exit", "SystemExit: 7"),
        ("raise_keyboard_interrupt", "KeyboardInterrupt"),
        ("raise_unprintable", "UnprintableError"),
        ("return_unserializable", "cannot carry"),
    ],
)
def test_bad_job_fails_clearly_and_the_worker_goes_on(
    processes: Processes, task_name: str, reason: str
) -> None:
    bad = getattr(jobs, task_name).delay()
    good = jobs.add.delay(1, 1)
    output_of(processes.worker("--burst"))
    assert bad.status is JobStatus.FAILED
    assert reason in (bad.error or "")
    assert good.result(timeout=5) == 2


def test_job_naming_a_function_that_is_not_a_task_fails(processes: Processes) -> None:
    queue = Queue("default")
    for name in ("jobs.not_a_task", "os.system", "no_such_module.func"):
        queue.enqueue([JobRequest(name, '["echo pwned"]', None, JobOptions())])
    good = jobs.add.delay(2, 2)
    output_of(processes.worker("--burst"))
    failed = FailedJobRegistry("default").jobs()
    assert len(failed) == 3
    assert all("is not a task" in (job.error or "") for job in failed)
    assert good.result(timeout=5) == 4


def test_task_that_forks_and_exits_does_not_hang_the_worker(processes: Processes) -> None:
    job = jobs.fork_and_exit.delay()
    after = jobs.add.delay(1, 2)
    worker = processes.worker("--burst")
    assert worker.wait(timeout=20) == 0  # its output pipe stays open in the grandchild
    assert job.result(timeout=5) == "parent returned"
    assert after.result(timeout=5) == 3


def test_timeout_kills_the_job_and_the_worker_goes_on(processes: Processes) -> None:
    slow = jobs.sleep_for.options(timeout=0.5).delay(30)
    after = jobs.add.delay(1, 2)
    output_of(processes.worker("--burst"), timeout=20)
    assert slow.status is JobStatus.FAILED
    assert "timed out after 0.5 s" in (slow.error or "")
    assert after.result(timeout=5) == 3


def test_concurrency_runs_jobs_side_by_side(processes: Processes, client: redis.Redis) -> None:
    made = [jobs.sleep_for.delay(1.0, f"c{i}") for i in range(4)]
    output_of(processes.worker("--burst", "--concurrency", "4"), timeout=30)
    starts = [job.started_at for job in made]
    ends = [job.ended_at for job in made]
    assert all(s is not None for s in starts) and all(e is not None for e in ends)
    assert max(starts) < min(ends)  # type: ignore[type-var]


def test_earlier_queue_is_served_first(processes: Processes) -> None:
    low = jobs.record.options(queue="low").delay("order")
    high = jobs.record.options(queue="high").delay("order")
    output_of(processes.worker("--burst", "high", "low"))
    assert high.result(timeout=5) < low.result(timeout=5)


def test_sigterm_finishes_the_running_job_then_exits_zero(
    processes: Processes, client: redis.Redis
) -> None:
    job = jobs.sleep_for.delay(1.5, "term")
    waiting = jobs.add.delay(1, 1)
    worker = processes.worker()
    wait_for(lambda: client.lrange("test:log:term", 0, -1) == ["start"], what="job start")
    os.killpg(worker.pid, signal.SIGTERM)
    output_of(worker)
    assert worker.returncode == 0
    assert job.result(timeout=1) == 1.5
    assert waiting.status is JobStatus.QUEUED


def test_import_of_missing_module_is_one_clear_line(processes: Processes) -> None:
    result = processes.run("worker", "--burst", "--import", "no_such_module_here")
    assert result.returncode != 0
    assert "no_such_module_here" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_of_module_that_raises_is_one_clear_line(processes: Processes, tmp_path) -> None:
    result = processes.run("worker", "--burst", "--import", "broken_module")
    assert result.returncode != 0
    assert "broken_module" in result.stderr and "Traceback" not in result.stderr


def test_job_fetch_finds_the_queue(client: redis.Redis) -> None:
    job = jobs.add.options(queue="elsewhere").delay(1, 2)
    fetched = Job.fetch(job.id)
    assert fetched.queue == "elsewhere"


def test_pickled_job_for_a_json_task_is_refused_without_decoding(
    processes: Processes, client: redis.Redis, tmp_path
) -> None:
    import base64
    import pickle

    marker = tmp_path / "unpickled"
    payload = pickle.dumps(([_Touch(str(marker))], {}))
    request = JobRequest("jobs.echo", base64.b64encode(payload).decode(), None,
                         JobOptions(serializer="pickle"))
    job = Queue("default").enqueue([request])[0]
    output_of(processes.worker("--burst"))
    assert job.status is JobStatus.FAILED
    assert "declared with 'json'" in (job.error or "")
    assert not marker.exists()


def test_pickled_job_for_a_pickle_task_runs(processes: Processes) -> None:
    job = jobs.echo_pickled.delay({1, 2})
    output_of(processes.worker("--burst"))
    assert job.result(timeout=5) == {1, 2}


def test_task_that_forks_a_returning_copy_answers_once(processes: Processes) -> None:
    job = jobs.fork_and_return.delay()
    after = jobs.add.delay(2, 3)
    worker = processes.worker("--burst")
    assert worker.wait(timeout=30) == 0
    assert job.result(timeout=5) == "returned"
    assert after.result(timeout=5) == 5


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))
