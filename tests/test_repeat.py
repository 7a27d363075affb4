"""Repeat, retry, cancel and unique job ids, with real worker and scheduler processes.

Timeline tests read each run's start and end from ``job.history()`` (times taken in the
job's process) and allow ``LATE_S`` of lateness; a run is never allowed to start early.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading

import jobs
import pytest
import redis
from conftest import Processes, output_of, wait_for
from schedulers import LATE_S, start_scheduling_worker, subscribers, wait_for_holder

from tasks_rq import (
    CanceledJobRegistry,
    DuplicateJobError,
    FinishedJobRegistry,
    Job,
    JobFailedError,
    JobStatus,
    Queue,
    Repeat,
    Retry,
    RunRecord,
    ScheduledJobRegistry,
    Scheduler,
)

UTC = dt.timezone.utc


def log_of(client: redis.Redis, name: str) -> list[str]:
    return list(client.lrange(f"test:log:{name}", 0, -1))


def oldest_first(job: Job[object]) -> list[RunRecord]:
    return list(reversed(job.history()))


def gaps(records: list[RunRecord]) -> list[float]:
    """Return the time from the end of each run to the start of the next, in seconds."""
    pairs = itertools.pairwise(records)
    return [b.started_at.timestamp() - a.ended_at.timestamp() for a, b in pairs]  # type: ignore[union-attr]


def assert_gaps(records: list[RunRecord], expected: list[float]) -> None:
    measured = gaps(records)
    assert len(measured) == len(expected)
    for got, want in zip(measured, expected, strict=True):
        assert want <= got <= want + LATE_S, f"gaps {measured}, expected {expected}"


@pytest.fixture()
def worker(processes: Processes, client: redis.Redis) -> None:
    """A worker with its scheduler, holding the default queue's lock."""
    start_scheduling_worker(processes)
    wait_for_holder(client)
    wait_for(lambda: subscribers(client) == 2, what="the worker to listen for wake-ups")


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "interval", "error", "match"),
    [
        (0, 1, ValueError, "times must be from 1"),
        (True, 1, TypeError, "times must be an int"),
        (2, [1, -2], ValueError, r"interval\[1\]"),
        (2, float("nan"), ValueError, "interval must be a finite"),
        (2, [], ValueError, "interval must not be an empty list"),
    ],
)
def test_bad_repeat_call_stores_nothing(
    client: redis.Redis, times: object, interval: object, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        jobs.add.repeat(times, interval, 1, 2)  # type: ignore[arg-type]
    assert client.dbsize() == 0


def test_repeat_option_must_be_a_repeat(client: redis.Redis) -> None:
    with pytest.raises(TypeError, match=r"repeat must be a Repeat\(times, interval\)"):
        jobs.add.options(repeat=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max": 1.5}, TypeError, "max must be an int"),
        ({"max": True}, TypeError, "max must be an int"),
        ({"max": 2, "interval": -1}, ValueError, "interval must be a finite"),
        ({"max": 2, "interval": []}, ValueError, "interval must not be an empty list"),
        ({"max": 2, "interval": "5"}, TypeError, "interval must be a number"),
        ({"max": 2, "backoff": 0.5}, ValueError, "backoff must be a finite number >= 1"),
        ({"max": 2, "backoff": float("nan")}, ValueError, "backoff"),
        ({"max": 2, "max_interval": -1}, ValueError, "max_interval"),
        ({"max": 2, "jitter": "yes"}, TypeError, "jitter must be a bool"),
    ],
)
def test_bad_retry_policy_is_refused_naming_the_argument(
    kwargs: dict[str, object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        Retry(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("retry", [True, 1.5, "3"])
def test_bad_retry_count_is_refused(retry: object) -> None:
    with pytest.raises(TypeError, match="retry must be an int"):
        jobs.add.options(retry=retry)  # type: ignore[arg-type]


# --- what a repeating or retried job shows ------------------------------------------------


def test_repeating_job_shows_its_repeats_and_intervals(client: redis.Redis) -> None:
    job = jobs.add.repeat(3, [1, 2.5], 1, 2)
    assert job.status is JobStatus.QUEUED
    assert job.repeats_left == 3
    assert job.repeat_intervals == [1.0, 2.5]


def test_retried_job_shows_its_retries_left(client: redis.Redis) -> None:
    job = jobs.add.options(retry=Retry(2, interval=[1, 5])).delay(1, 2)
    assert job.retries_left == 2
    assert jobs.add.options(retry=4).delay(1, 2).retries_left == 4


# --- repeat timelines ---------------------------------------------------------------------


def test_repeat_starts_each_run_its_interval_after_the_previous_run_ended(
    client: redis.Redis, worker: None
) -> None:
    job = jobs.record.repeat(3, [1, 2], "timeline")
    job.result(timeout=20)
    runs = oldest_first(job)
    assert [run.outcome for run in runs] == ["ok"] * 4
    assert_gaps(runs, [1, 2, 2])
    assert len(log_of(client, "timeline")) == 4
    assert job.runs == 4 and job.repeats_left == 0
    assert job.status is JobStatus.FINISHED


def test_repeat_interval_zero_queues_the_next_run_at_once(
    client: redis.Redis, worker: None
) -> None:
    job = jobs.record.repeat(2, 0, "at-once")
    job.result(timeout=10)
    assert_gaps(oldest_first(job), [0, 0])


def test_repeats_left_counts_down_between_runs(client: redis.Redis, worker: None) -> None:
    job = jobs.record.repeat(2, 0.5, "countdown")
    wait_for(
        lambda: len(log_of(client, "countdown")) == 1 and job.status is JobStatus.SCHEDULED,
        what="the first run to end",
    )
    job.refresh()
    assert job.repeats_left == 1
    assert job in ScheduledJobRegistry("default")
    job.result(timeout=10)
    job.refresh()
    assert job.repeats_left == 0


def test_history_keeps_each_runs_result_newest_first(client: redis.Redis, worker: None) -> None:
    job = jobs.fail_odd_calls.options(retry=1).repeat(1, 0, "history")
    assert job.result(timeout=10) == 4
    history = job.history()
    assert [run.outcome for run in history] == ["ok", "fail", "ok", "fail"]
    assert [run.result for run in history] == [4, None, 2, None]
    assert "odd call 3" in (history[1].error or "")
    assert all(run.started_at and run.ended_at for run in history)


def test_failed_run_stops_the_repeats(client: redis.Redis, worker: None) -> None:
    job = jobs.record_then_fail.repeat(3, 0, "stops")
    with pytest.raises(JobFailedError, match="failing on purpose"):
        job.result(timeout=10)
    assert len(log_of(client, "stops")) == 1
    assert job.repeats_left == 3
    assert job not in ScheduledJobRegistry("default") and job not in Queue("default")


@pytest.mark.parametrize("how", ["delay", "at", "after"])
def test_repeat_option_combines_with_delay_at_and_after(
    client: redis.Redis, worker: None, how: str
) -> None:
    configured = jobs.record.options(repeat=Repeat(1, 0.3))
    not_before = dt.datetime.now(UTC)
    if how == "delay":
        job = configured.delay(how)
    elif how == "at":
        not_before += dt.timedelta(seconds=0.4)
        job = configured.at(not_before, how)
    else:
        not_before += dt.timedelta(seconds=0.4)
        job = configured.after(0.4, how)
    job.result(timeout=10)
    runs = oldest_first(job)
    assert len(runs) == 2
    assert runs[0].started_at is not None and runs[0].started_at >= not_before
    assert_gaps(runs, [0.3])


# --- retries ------------------------------------------------------------------------------


def test_retry_waits_in_the_scheduled_registry(processes: Processes, client: redis.Redis) -> None:
    job = jobs.fail.options(retry=Retry(1, interval=30)).delay()
    output_of(processes.worker("--burst", "--with-scheduler"))
    assert job.status is JobStatus.SCHEDULED
    assert job in ScheduledJobRegistry("default")
    job.refresh()
    assert job.retries_left == 0
    assert job.scheduled_for is not None and job.ended_at is not None
    assert abs((job.scheduled_for - job.ended_at).total_seconds() - 30) < 0.001


def test_retries_used_up_end_the_job_failed(client: redis.Redis, worker: None) -> None:
    job = jobs.record_then_fail.options(retry=Retry(2, interval=[0.2, 0.4])).delay("used-up")
    with pytest.raises(JobFailedError):
        job.result(timeout=10)
    runs = oldest_first(job)
    assert [run.outcome for run in runs] == ["fail"] * 3
    assert_gaps(runs, [0.2, 0.4])
    assert job.status is JobStatus.FAILED and job.retries_left == 0


def test_run_that_succeeds_on_retry_counts_once_and_repeats_go_on(
    client: redis.Redis, worker: None
) -> None:
    job = jobs.flaky.options(retry=Retry(1, interval=0.3), repeat=Repeat(2, 0.5)).delay("fl", 1)
    assert job.result(timeout=15) == "ok after 4"
    runs = oldest_first(job)
    assert [run.outcome for run in runs] == ["fail", "ok", "ok", "ok"]
    assert_gaps(runs, [0.3, 0.5, 0.5])
    assert job.runs == 3


def test_each_repetition_gets_its_retries_again(client: redis.Redis, worker: None) -> None:
    job = jobs.fail_odd_calls.options(retry=1).repeat(2, 0, "reset")
    assert job.result(timeout=15) == 6
    assert [run.outcome for run in oldest_first(job)] == ["fail", "ok"] * 3


# --- cancel -------------------------------------------------------------------------------


def test_canceled_scheduled_job_never_runs(client: redis.Redis, worker: None) -> None:
    # CASES #11: a cancelled scheduled job ran anyway.
    job = jobs.record.after(60, "canceled")
    assert job.cancel() is True
    assert job.status is JobStatus.CANCELED
    assert job not in ScheduledJobRegistry("default")
    assert job in CanceledJobRegistry("default")


def test_canceled_job_stays_unrun_after_its_due_time(client: redis.Redis, worker: None) -> None:
    job = jobs.record.after(0.3, "canceled-soon")
    marker = jobs.record.after(0.6, "marker")
    job.cancel()
    marker.result(timeout=10)  # the scheduler has promoted everything due before the marker
    assert log_of(client, "canceled-soon") == []
    assert job.status is JobStatus.CANCELED


def test_cancel_between_runs_stops_the_repeats(client: redis.Redis, worker: None) -> None:
    job = jobs.record.repeat(5, 1.0, "cancel-between")
    wait_for(lambda: job.status is JobStatus.SCHEDULED, what="the first run to end")
    assert job.cancel() is True
    assert job.status is JobStatus.CANCELED
    marker = jobs.record.after(1.5, "marker")
    marker.result(timeout=10)
    assert len(log_of(client, "cancel-between")) == 1
    assert job.status is JobStatus.CANCELED
    assert job not in ScheduledJobRegistry("default")


def test_cancel_of_a_running_job_lets_the_run_end_and_stops_the_repeats(
    client: redis.Redis, worker: None
) -> None:
    job = jobs.sleep_for.repeat(3, 0, 1.0, "running")
    wait_for(lambda: log_of(client, "running") == ["start"], what="the first run to start")
    assert job.cancel() is True
    assert job.is_cancel_requested and job.status is JobStatus.STARTED
    wait_for(lambda: job.status is JobStatus.CANCELED, what="the run to end")
    assert log_of(client, "running") == ["start", "end"]
    job.refresh()
    assert job.return_value == 1.0
    assert job in CanceledJobRegistry("default")


def test_cancel_of_an_ended_job_returns_false(processes: Processes, client: redis.Redis) -> None:
    job = jobs.add.delay(1, 2)
    output_of(processes.worker("--burst"))
    assert job.cancel() is False
    assert job.status is JobStatus.FINISHED


# --- unique job ids -----------------------------------------------------------------------


def test_scheduled_job_id_cannot_be_enqueued_twice(client: redis.Redis) -> None:
    # CASES #12: reusing a custom id silently merged two jobs.
    first = jobs.add.options(job_id="nightly").after(60, 1, 2)
    due = first.scheduled_for
    with pytest.raises(DuplicateJobError, match="'nightly' is already scheduled"):
        jobs.add.options(job_id="nightly").after(5, 3, 4)
    assert len(ScheduledJobRegistry("default")) == 1
    assert Job.fetch("nightly").args == [1, 2] and Job.fetch("nightly").scheduled_for == due


def test_keep_returns_the_pending_scheduled_job_unchanged(client: redis.Redis) -> None:
    first = jobs.add.options(job_id="nightly").after(60, 1, 2)
    again = jobs.add.options(job_id="nightly", on_conflict="keep").at(dt.datetime.now(UTC), 3, 4)
    assert again == first
    assert again.args == [1, 2] and again.status is JobStatus.SCHEDULED


def test_repeating_job_never_trips_over_its_own_id(client: redis.Redis, worker: None) -> None:
    job = jobs.record.options(job_id="every-time").repeat(2, 0.2, "own-id")
    job.result(timeout=10)
    assert len(log_of(client, "own-id")) == 3
    assert job.status is JobStatus.FINISHED


def test_repeating_job_id_is_pending_between_runs(client: redis.Redis, worker: None) -> None:
    job = jobs.record.options(job_id="between").repeat(1, 5, "between")
    wait_for(lambda: job.status is JobStatus.SCHEDULED, what="the first run to end")
    with pytest.raises(DuplicateJobError, match="scheduled"):
        jobs.record.options(job_id="between").delay("other")


def test_job_id_is_free_again_once_the_repeats_are_done(client: redis.Redis, worker: None) -> None:
    jobs.record.options(job_id="reused").repeat(1, 0, "reused").result(timeout=10)
    again = jobs.record.options(job_id="reused").delay("reused-2")
    assert again.result(timeout=10) > 0
    assert again in FinishedJobRegistry("default")


def test_reused_job_id_starts_a_fresh_history(client: redis.Redis, worker: None) -> None:
    jobs.add.options(job_id="fresh").repeat(2, 0, 1, 1).result(timeout=10)
    plain = jobs.add.options(job_id="fresh").delay(2, 2)
    assert plain.result(timeout=10) == 4
    assert plain.history() == []
    repeating = jobs.add.options(job_id="fresh").repeat(1, 0, 3, 3)
    assert repeating.result(timeout=10) == 6
    assert [run.result for run in repeating.history()] == [6, 6]


# --- repetitions under recovery sweeps ----------------------------------------------------


def test_every_repetition_happens_once_while_recovery_sweeps_run_often(
    processes: Processes, client: redis.Redis
) -> None:
    # CASES #13: self-rescheduling jobs fell out of their cycle under aggressive sweeps.
    start_scheduling_worker(processes)
    start_scheduling_worker(processes)
    wait_for(lambda: subscribers(client) == 4, what="both workers and schedulers to listen")
    for i in range(1000):
        jobs.count_run.repeat(2, [0, 0.05], f"sweep-{i}")
    sweeper = Scheduler(["default"], client)
    done = threading.Event()
    sweeps = [0]

    def sweep() -> None:
        while not done.is_set():
            sweeper.recover("default")
            sweeps[0] += 1

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: len(FinishedJobRegistry("default")) == 1000,
            timeout=60,
            what="1,000 repeating jobs to finish",
        )
    finally:
        done.set()
        thread.join(timeout=5)
    assert sweeps[0] > 100
    counts = {name: int(n) for name, n in client.hgetall("test:runs").items()}
    assert len(counts) == 1000 and set(counts.values()) == {3}
