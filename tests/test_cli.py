"""The operator's commands, each run as a real ``tasks-rq`` process against the test Redis.

Exit codes are part of the contract: 0 when the command did what it says, 1 when something
is not found or went wrong, 2 for a usage error. Bad input prints one ``Error:`` line and
never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from conftest import Processes, output_of, wait_for
from tasks_rq import (
    CanceledJobRegistry,
    FailedJobRegistry,
    Job,
    JobStatus,
    Queue,
    ScheduledJobRegistry,
)
from tasks_rq import keys as key_names

import jobs

MANY = 600  # more than one batch (inspection.BATCH_SIZE is 500)


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    """The command failed with ``code`` and one ``Error:`` line holding ``text``."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert text in errors[0]


def failed_jobs(processes: Processes, count: int, queue: str = "default") -> list[Job[None]]:
    made = jobs.fail.options(queue=queue).map([f"failure {i}" for i in range(count)])
    output_of(processes.worker("--burst", "-c", "2", queue), timeout=120)
    assert len(FailedJobRegistry(queue)) == count
    return made


# --- info ---


def test_info_counts_jobs_per_status_for_each_queue(processes: Processes) -> None:
    jobs.add.delay(1, 2)
    jobs.add.delay(3, 4)
    jobs.add.after(timedelta(hours=1), 5, 6)
    jobs.noop.options(queue="reports").delay()

    shown = json_of(processes.run("info", "--json"))

    by_name = {queue["name"]: queue for queue in shown["queues"]}
    assert by_name["default"]["queued"] == 2
    assert by_name["default"]["scheduled"] == 1
    assert by_name["default"]["failed"] == 0
    assert by_name["reports"]["queued"] == 1


def test_info_prints_a_table_for_people(processes: Processes) -> None:
    jobs.add.delay(1, 2)

    result = processes.run("info")

    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("QUEUE"))
    assert header.split() == [
        "QUEUE", "QUEUED", "SCHEDULED", "STARTED", "FINISHED", "FAILED", "CANCELED", "SCHEDULER"
    ]
    row = next(line for line in result.stdout.splitlines() if line.startswith("default"))
    assert row.split() == ["default", "1", "0", "0", "0", "0", "0", "-"]
    assert "no workers" in result.stdout


def test_info_shows_a_busy_worker_with_its_job_and_heartbeat(processes: Processes) -> None:
    job = jobs.sleep_for.delay(30)
    processes.worker("--name", "inspected")
    wait_for(lambda: job.status is JobStatus.STARTED, what="the job to start")

    def busy_worker() -> dict[str, Any] | None:
        workers = json_of(processes.run("info", "--json"))["workers"]
        return next((w for w in workers if w["state"] == "busy"), None)

    shown = wait_for(busy_worker, what="a heartbeat saying busy")
    assert shown["name"] == "inspected"
    assert shown["jobs"] == [job.id]
    assert shown["queues"] == ["default"]
    heartbeat = datetime.fromisoformat(shown["heartbeat"])
    # The heartbeat comes every lease/3 s (5 s by default); allow that plus a slow box.
    assert datetime.now(timezone.utc) - heartbeat < timedelta(seconds=15)


def test_info_names_the_scheduler_holding_each_queue(
    processes: Processes, client: redis.Redis
) -> None:
    jobs.add.delay(1, 2)
    lock = key_names.for_queue("default").lock
    processes.start("scheduler", "default")
    holder = wait_for(lambda: client.get(lock), what="the scheduler to take the lock")

    shown = json_of(processes.run("info", "--json"))

    assert shown["queues"][0]["scheduler"] == holder


def test_info_interval_prints_a_fresh_view_each_time(processes: Processes) -> None:
    jobs.add.delay(1, 2)

    result = processes.run("info", "--interval", "0.1", "--count", "3", "--json")

    assert result.returncode == 0, result.stderr
    views = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(views) == 3
    stamps = [datetime.fromisoformat(view["taken_at"]) for view in views]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    # --interval 0.1 between three views: at least 0.2 s from first to last.
    assert stamps[-1] - stamps[0] >= timedelta(seconds=0.2)


def test_info_interval_prints_the_table_again_for_people(processes: Processes) -> None:
    jobs.add.delay(1, 2)

    result = processes.run("info", "--interval", "0.1", "--count", "2")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("QUEUE    QUEUED") == 2


def test_info_count_without_interval_is_a_usage_error(processes: Processes) -> None:
    assert_clean_error(processes.run("info", "--count", "2"), 2, "--count needs --interval")


# --- jobs list ---


def test_jobs_list_filters_by_queue_and_status(processes: Processes) -> None:
    jobs.add.delay(1, 2)
    scheduled = jobs.add.after(timedelta(hours=1), 3, 4)
    jobs.add.options(queue="other").after(timedelta(hours=1), 5, 6)

    shown = json_of(processes.run("jobs", "list", "-Q", "default", "-s", "scheduled", "--json"))

    assert [(row["id"], row["queue"], row["status"]) for row in shown] == [
        (scheduled.id, "default", "scheduled")
    ]
    assert datetime.fromisoformat(shown[0]["when"]) == scheduled.scheduled_for


def test_jobs_list_shows_waiting_jobs_next_to_run_first(processes: Processes) -> None:
    made = jobs.add.map(range(5), range(5))

    shown = json_of(processes.run("jobs", "list", "--json"))

    assert [row["id"] for row in shown] == [job.id for job in made]


def test_jobs_list_limit_caps_the_number_of_jobs(processes: Processes) -> None:
    jobs.add.map(range(30), range(30))

    shown = json_of(processes.run("jobs", "list", "--limit", "7", "--json"))

    assert len(shown) == 7


def test_jobs_list_prints_a_row_per_job_for_people(processes: Processes) -> None:
    job = jobs.add.options(description="nightly sum").delay(1, 2)

    result = processes.run("jobs", "list")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "QUEUE", "STATUS", "TASK", "WHEN"]
    assert lines[1].split()[:4] == [job.id, "default", "queued", "jobs.add"]
    assert lines[1].endswith("nightly sum")


def test_jobs_list_of_an_unknown_queue_fails_cleanly(processes: Processes) -> None:
    jobs.add.delay(1, 2)

    result = processes.run("jobs", "list", "--queue", "nope")

    assert_clean_error(result, 1, "no queue 'nope' (known queues: default)")


def test_jobs_list_of_an_unknown_status_is_a_usage_error(processes: Processes) -> None:
    assert_clean_error(processes.run("jobs", "list", "-s", "lost"), 2, "'lost' is not one of")


# --- jobs show ---


def test_jobs_show_prints_the_call_status_and_traceback_of_a_failed_job(
    processes: Processes,
) -> None:
    job = jobs.fail.delay("disk full")
    output_of(processes.worker("--burst"))

    result = processes.run("jobs", "show", job.id)

    assert result.returncode == 0, result.stderr
    assert f"job {job.id} (queue default)" in result.stdout
    assert 'jobs.fail("disk full")' in result.stdout
    assert "status        failed" in result.stdout
    assert "RuntimeError: disk full" in result.stdout


def test_jobs_show_json_has_result_times_and_retries_left(processes: Processes) -> None:
    job = jobs.add.options(retry=3).delay(20, 22)
    output_of(processes.worker("--burst"))

    shown = json_of(processes.run("jobs", "show", job.id, "--json"))

    assert shown["status"] == "finished"
    assert shown["args"] == [20, 22] and shown["kwargs"] == {}
    assert shown["result"] == 42
    assert (shown["retries"], shown["retries_left"]) == (3, 3)
    assert shown["repeats_left"] == 0 and shown["runs"] == 1
    started = datetime.fromisoformat(shown["started_at"])
    ended = datetime.fromisoformat(shown["ended_at"])
    assert started <= ended


def test_jobs_show_counts_repeats_left(processes: Processes) -> None:
    job = jobs.add.options(queue="repeating").repeat(3, [60, 120], 1, 1)
    output_of(processes.worker("--burst", "repeating"))

    shown = json_of(processes.run("jobs", "show", job.id, "--json"))

    assert shown["status"] == "scheduled"
    assert shown["repeats_left"] == 2
    assert shown["repeat_intervals"] == [60, 120]


def test_jobs_show_of_an_unknown_id_fails_cleanly(processes: Processes) -> None:
    jobs.add.delay(1, 2)

    result = processes.run("jobs", "show", "no-such-job")

    assert_clean_error(result, 1, "no job 'no-such-job'")


# --- jobs cancel ---


def test_jobs_cancel_moves_a_scheduled_job_to_canceled(processes: Processes) -> None:
    job = jobs.add.after(timedelta(hours=1), 1, 2)

    result = processes.run("jobs", "cancel", job.id)

    assert result.returncode == 0, result.stderr
    assert job.status is JobStatus.CANCELED
    assert job not in ScheduledJobRegistry("default")
    assert job in CanceledJobRegistry("default")


def test_jobs_cancel_of_a_running_job_flags_it(processes: Processes) -> None:
    job = jobs.sleep_for.delay(30)
    processes.worker()
    wait_for(lambda: job.status is JobStatus.STARTED, what="the job to start")

    result = processes.run("jobs", "cancel", job.id)

    assert result.returncode == 0, result.stderr
    assert "is running: it ends as canceled" in result.stdout
    job.refresh()
    assert job.is_cancel_requested and job.status is JobStatus.STARTED


def test_jobs_cancel_of_an_ended_job_exits_1(processes: Processes) -> None:
    job = jobs.add.delay(1, 2)
    job.cancel()

    result = processes.run("jobs", "cancel", job.id)

    assert_clean_error(result, 1, "already ended (canceled)")


# --- jobs requeue ---


def test_jobs_requeue_puts_a_failed_job_back_with_its_retries_restored(
    processes: Processes, client: redis.Redis
) -> None:
    job = jobs.fail.options(retry=1).delay("again")
    output_of(processes.worker("--burst"))
    assert job.status is JobStatus.FAILED and job.retries_left == 0

    result = processes.run("jobs", "requeue", job.id)

    assert result.returncode == 0, result.stderr
    job.refresh()
    assert job.status is JobStatus.QUEUED
    assert job in Queue("default") and job not in FailedJobRegistry("default")
    assert job.retries_left == 1
    assert client.ttl(job.key) == -1  # the failure's TTL no longer applies


def test_jobs_requeue_refuses_a_job_that_is_not_failed(processes: Processes) -> None:
    job = jobs.add.delay(1, 2)

    result = processes.run("jobs", "requeue", job.id)

    assert_clean_error(result, 1, "is queued, not failed")
    assert list(Queue("default").job_ids()) == [job.id]


def test_jobs_requeue_failed_requeues_every_failed_job_of_the_queue(
    processes: Processes,
) -> None:
    made = failed_jobs(processes, MANY)

    result = processes.run("jobs", "requeue", "--failed", "--queue", "default", "--json")

    assert json_of(result) == {"queue": "default", "requeued": MANY}
    assert f"requeueing {MANY} failed job(s)" in result.stderr  # the progress bar's label
    assert len(FailedJobRegistry("default")) == 0
    assert set(Queue("default").job_ids()) == {job.id for job in made}


def test_jobs_requeue_failed_leaves_other_queues_alone(processes: Processes) -> None:
    failed_jobs(processes, 2, queue="default")
    failed_jobs(processes, 3, queue="other")

    result = processes.run("jobs", "requeue", "--failed", "-Q", "other")

    assert result.returncode == 0, result.stderr
    assert "requeued 3 failed job(s) on queue other" in result.stdout
    assert len(FailedJobRegistry("default")) == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--failed"], "--failed needs --queue QUEUE"),
        ([], "give either a JOB_ID or --failed --queue QUEUE"),
        (["some-id", "--failed", "-Q", "default"], "give either a JOB_ID or --failed"),
    ],
)
def test_jobs_requeue_with_wrong_arguments_is_a_usage_error(
    processes: Processes, arguments: list[str], message: str
) -> None:
    assert_clean_error(processes.run("jobs", "requeue", *arguments), 2, message)


# --- purge ---


def test_purge_with_yes_deletes_the_jobs_and_every_trace_of_them(
    processes: Processes, client: redis.Redis
) -> None:
    made = jobs.add.map(range(MANY), range(MANY))
    kept = jobs.add.after(timedelta(hours=1), 1, 1)

    result = processes.run("purge", "default", "--status", "queued", "--yes", "--json")

    assert json_of(result) == {"queue": "default", "status": "queued", "deleted": MANY}
    assert f"deleting {MANY} queued job(s)" in result.stderr  # the progress bar's label
    assert len(Queue("default")) == 0
    assert not any(client.exists(job.key) for job in made)
    assert kept.status is JobStatus.SCHEDULED


def test_purge_deletes_failed_jobs_from_the_failed_registry(
    processes: Processes, client: redis.Redis
) -> None:
    made = failed_jobs(processes, 3)

    result = processes.run("purge", "default", "-s", "failed", "-y")

    assert result.returncode == 0, result.stderr
    assert "deleted 3 failed job(s) of queue default" in result.stdout
    assert len(FailedJobRegistry("default")) == 0
    assert not any(client.exists(job.key) for job in made)


def test_purge_asks_first_and_keeps_the_jobs_when_refused(processes: Processes) -> None:
    jobs.add.map(range(3), range(3))

    result = processes.run("purge", "default", "--status", "queued", input="n\n")

    assert result.returncode == 1
    assert "Delete 3 queued job(s) of queue default?" in result.stderr
    assert len(Queue("default")) == 3


def test_purge_deletes_when_the_prompt_is_confirmed(processes: Processes) -> None:
    jobs.add.map(range(3), range(3))

    result = processes.run("purge", "default", "--status", "queued", input="y\n")

    assert result.returncode == 0, result.stderr
    assert len(Queue("default")) == 0


def test_purge_of_an_unknown_queue_fails_cleanly(processes: Processes) -> None:
    jobs.add.delay(1, 2)

    result = processes.run("purge", "nope", "--status", "queued", "--yes")

    assert_clean_error(result, 1, "no queue 'nope'")


def test_purge_without_a_status_is_a_usage_error(processes: Processes) -> None:
    assert_clean_error(processes.run("purge", "default", "--yes"), 2, "Missing option")


# --- enqueue ---


def test_enqueue_queues_a_job_with_json_arguments(processes: Processes) -> None:
    shown = json_of(processes.run("enqueue", "jobs.add", "[2, 3]", "--json"))

    job = Job.fetch(shown["id"])
    assert (shown["queue"], shown["status"]) == ("default", "queued")
    assert job.task_name == "jobs.add" and job.args == [2, 3]
    assert job in Queue("default")


def test_enqueue_takes_keyword_arguments_and_a_queue(processes: Processes) -> None:
    result = processes.run("enqueue", "jobs.fail", "--kwargs", '{"message": "m"}', "-Q", "ops")

    assert result.returncode == 0, result.stderr
    (job,) = Queue("ops").jobs()
    assert job.kwargs == {"message": "m"} and job.args == []
    assert f"queued job {job.id} on queue ops" in result.stdout


def test_enqueue_at_schedules_the_job_for_that_instant(processes: Processes) -> None:
    when = datetime(2031, 5, 6, 7, 8, 9, 250000, tzinfo=timezone.utc)

    result = processes.run("enqueue", "jobs.add", "[1, 2]", "--at", "2031-05-06T07:08:09.25Z")

    (job,) = ScheduledJobRegistry("default").jobs()
    assert result.returncode == 0, result.stderr
    assert job.scheduled_for == when



def test_enqueue_after_schedules_the_job_that_many_seconds_ahead(processes: Processes) -> None:
    before = time.time()

    shown = json_of(processes.run("enqueue", "jobs.add", "[1, 2]", "--after", "90", "--json"))

    due = datetime.fromisoformat(shown["due"]).timestamp()
    assert shown["status"] == "scheduled"
    assert before + 90 <= due <= time.time() + 90


def test_enqueue_imports_a_module_to_find_a_renamed_task(processes: Processes) -> None:
    result = processes.run("enqueue", "renamed-multiply", "[6, 7]", "--import", "jobs")

    assert result.returncode == 0, result.stderr
    (job,) = Queue("default").jobs()
    assert job.task_name == "renamed-multiply" and job.args == [6, 7]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["jobs.add", "[1, 2"], "Invalid value for ARGS_JSON: not valid JSON"),
        (["jobs.add", '{"a": 1}'], "ARGS_JSON: must be a JSON list"),
        (["jobs.add", "[1, 2]", "--kwargs", "[]"], "--kwargs: must be a JSON dict"),
        (["jobs.add", "[1, 2]", "--at", "next tuesday"], "is not an ISO 8601 date and time"),
        (["jobs.add", "[1, 2]", "--at", "2031-01-01", "--after", "5"], "not both"),
        (["jobs.add", "[1, 2]", "--after", "-5"], "Invalid value for '--after'"),
    ],
)
def test_enqueue_bad_input_is_a_usage_error(
    processes: Processes, arguments: list[str], message: str
) -> None:
    assert_clean_error(processes.run("enqueue", *arguments), 2, message)
    assert len(Queue("default")) == 0


@pytest.mark.parametrize(
    ("task_name", "message"),
    [
        ("jobs.no_such_task", "'jobs.no_such_task' is not a task"),
        ("jobs.not_a_task", "'jobs.not_a_task' is not a task"),
        ("no_such_module.task", "is not a task"),
    ],
)
def test_enqueue_of_something_that_is_not_a_task_fails_cleanly(
    processes: Processes, task_name: str, message: str
) -> None:
    assert_clean_error(processes.run("enqueue", task_name, "[]"), 1, message)


def test_enqueue_with_arguments_the_task_does_not_take_fails_cleanly(
    processes: Processes,
) -> None:
    result = processes.run("enqueue", "jobs.add", "[1]")

    assert_clean_error(result, 1, "jobs.add(): missing a required argument: 'b'")
    assert len(Queue("default")) == 0


def test_check_of_an_unknown_queue_fails_cleanly(processes: Processes) -> None:
    jobs.add.delay(1, 2)
    result = processes.run("check", "no-such-queue")
    assert result.returncode == 1
    assert "no queue 'no-such-queue'" in result.stderr
    assert "Traceback" not in result.stderr
