"""Scheduling with real worker and scheduler processes: .at() and .after(), the scheduled
registry, one exact scheduler per queue, and quick takeover when a scheduler stops."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import jobs
import pytest
import redis
from conftest import TESTS_DIR, Processes, output_of, wait_for, worker_env
from schedulers import (
    LATE_S,
    LOCK_TTL_S,
    LogReader,
    lock_holder,
    pid_of,
    start_scheduler,
    start_scheduling_worker,
    subscribers,
    wait_for_holder,
)

from tasks_rq import (
    FinishedJobRegistry,
    Job,
    JobStatus,
    Queue,
    ScheduledJobRegistry,
    Scheduler,
    keys,
)
from tasks_rq.job import scripts_for
from tasks_rq.options import JobOptions
from tasks_rq.queue import JobRequest

UTC = dt.timezone.utc
SCHEDULED = keys.for_queue("default").scheduled


def due_of(client: redis.Redis, job: Job[object]) -> float:
    score = client.zscore(SCHEDULED, job.id)
    assert score is not None, f"{job.id} is not in the scheduled registry"
    return float(score)


def runs(client: redis.Redis) -> dict[str, int]:
    """Return how often each name was run by ``jobs.count_run``."""
    return {name: int(count) for name, count in client.hgetall("test:runs").items()}


# --- storing scheduled jobs ---------------------------------------------------------------


def test_after_job_waits_in_the_scheduled_registry_not_in_the_queue(
    client: redis.Redis,
) -> None:
    queue = Queue("default")
    job = jobs.add.after(dt.timedelta(seconds=60), 1, 2)
    assert job not in queue
    assert job in ScheduledJobRegistry(queue=queue)
    assert job.status is JobStatus.SCHEDULED


def test_scheduled_for_is_an_aware_datetime_at_the_due_time(client: redis.Redis) -> None:
    before = time.time()
    job = jobs.add.after(30, 1, 2)
    due = job.scheduled_for
    assert due is not None and due.utcoffset() == dt.timedelta(0)
    assert before + 30 <= due.timestamp() <= time.time() + 30


def test_at_keeps_the_instant_to_the_microsecond(client: redis.Redis) -> None:
    when = dt.datetime(2030, 5, 6, 7, 8, 9, 123457, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    job = jobs.add.at(when, 1, 2)
    assert due_of(client, job) == when.timestamp()
    assert job.scheduled_for is not None
    assert abs(job.scheduled_for - when) <= dt.timedelta(microseconds=1)


def test_after_takes_fractions_of_a_second(client: redis.Redis) -> None:
    before = time.time()
    job = jobs.add.after(0.25, 1, 2)
    assert before + 0.25 <= due_of(client, job) <= time.time() + 0.25


def test_options_combine_with_at_and_after(client: redis.Redis) -> None:
    when = dt.datetime(2030, 1, 1, tzinfo=UTC)
    on_reports = jobs.add.options(queue="reports", job_id="r-1", description="d")
    at_job = on_reports.at(when, 1, 2)
    after_job = jobs.add.options(queue="reports").after(5, 3, 4)
    registry = ScheduledJobRegistry("reports")
    assert at_job.id == "r-1" and at_job in registry and after_job in registry
    assert at_job.description == "d" and after_job.args == [3, 4]


def test_past_time_is_stored_as_due_at_once(client: redis.Redis) -> None:
    job = jobs.add.at(dt.datetime.now(UTC) - dt.timedelta(hours=1), 1, 2)
    assert job.status is JobStatus.SCHEDULED
    assert due_of(client, job) < time.time()


def test_scheduling_an_earlier_job_wakes_the_scheduler_and_a_later_one_does_not(
    client: redis.Redis,
) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.wake_channel("default"))
    try:
        assert pubsub.get_message(timeout=1.0) is None  # reads the subscription's confirmation
        woken = []
        for delay_s in (60, 120, 30):
            jobs.add.after(delay_s, 1, 2)
            woken.append(pubsub.get_message(timeout=0.2) is not None)
        assert woken == [True, False, True]
    finally:
        pubsub.close()


class NoOffset(dt.tzinfo):
    def utcoffset(self, when: dt.datetime | None) -> None:
        return None


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: jobs.add.at("tomorrow", 1, 2), TypeError, "when must be a datetime"),
        (lambda: jobs.add.at(None, 1, 2), TypeError, "when must be a datetime"),
        (lambda: jobs.add.at(1700000000, 1, 2), TypeError, r"fromtimestamp.*\.after"),
        (
            lambda: jobs.add.at(dt.datetime(2030, 1, 1, tzinfo=NoOffset()), 1, 2),
            ValueError,
            "when has a tzinfo",
        ),
        (lambda: jobs.add.at(dt.datetime.max, 1, 2), ValueError, "when"),
        (lambda: jobs.add.after(-5, 1, 2), ValueError, "delay must be .* >= 0"),
        (lambda: jobs.add.after(float("nan"), 1, 2), ValueError, "delay must be a finite"),
        (lambda: jobs.add.after(float("inf"), 1, 2), ValueError, "delay must be a finite"),
        (lambda: jobs.add.options(queue="q").after(-0.5, 1, 2), ValueError, "delay"),
    ],
    ids=[
        "text",
        "none",
        "epoch-int",
        "no-offset",
        "datetime-max",
        "negative",
        "nan",
        "inf",
        "through-options",
    ],
)
def test_bad_time_is_refused_naming_the_argument_and_nothing_is_stored(
    client: redis.Redis, call, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        call()
    assert client.dbsize() == 0


ENQUEUE_NAIVE = """
import datetime as dt, sys
import jobs
print(jobs.add.at(dt.datetime(2030, 1, 15, 9, 0), 1, 2).id)
print(jobs.add.at(dt.datetime(2030, 7, 15, 9, 0), 1, 2).id)
"""


@pytest.mark.parametrize(
    ("zone", "winter_utc_hour", "summer_utc_hour"),
    [("Europe/Berlin", 8, 7), ("America/New_York", 14, 13)],
)
def test_naive_at_stores_the_local_wall_time_of_the_enqueuing_process(
    client: redis.Redis, redis_url: str, zone: str, winter_utc_hour: int, summer_utc_hour: int
) -> None:
    env = {**worker_env(redis_url), "TZ": zone}
    done = subprocess.run(
        [sys.executable, "-c", ENQUEUE_NAIVE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(TESTS_DIR),
    )
    winter, summer = (Job(job_id, "default") for job_id in done.stdout.split())
    assert (
        due_of(client, winter) == dt.datetime(2030, 1, 15, winter_utc_hour, tzinfo=UTC).timestamp()
    )
    assert (
        due_of(client, summer) == dt.datetime(2030, 7, 15, summer_utc_hour, tzinfo=UTC).timestamp()
    )


# --- running scheduled jobs ---------------------------------------------------------------


def test_jobs_start_at_their_due_time_and_never_early(
    processes: Processes, client: redis.Redis
) -> None:
    start_scheduling_worker(processes)
    wait_for_holder(client)
    made = [jobs.record.after(0.2 + 0.15 * i, "due") for i in range(6)]
    for job in made:
        started = job.result(timeout=10)
        assert job.scheduled_for is not None
        lateness = started - job.scheduled_for.timestamp()
        assert 0 <= lateness <= LATE_S, f"started {lateness * 1000:.1f} ms after its due time"


ENQUEUE_IN_SHANGHAI = """
import datetime as dt, time
import jobs
base = time.time()
job = jobs.record.at(dt.datetime.now() + dt.timedelta(seconds=2), "shanghai")
print(job.id, base)
"""


def test_naive_time_in_a_non_utc_zone_runs_after_the_delay_not_hours_off(
    processes: Processes, client: redis.Redis, redis_url: str
) -> None:
    # CASES #8: naive datetimes read as UTC ran jobs hours early or late.
    env = {**worker_env(redis_url), "TZ": "Asia/Shanghai"}
    start_scheduling_worker(processes, env=env)
    wait_for_holder(client)
    done = subprocess.run(
        [sys.executable, "-c", ENQUEUE_IN_SHANGHAI],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(TESTS_DIR),
    )
    job_id, base = done.stdout.split()
    job = Job(job_id, "default")
    due = due_of(client, job)
    assert 1.95 <= due - float(base) <= 2.05  # not hours off, either way
    started = job.result(timeout=10)
    assert 0 <= started - due <= LATE_S


def test_jobs_due_while_no_worker_ran_all_run_when_one_starts(
    processes: Processes, client: redis.Redis
) -> None:
    # CASES #5: jobs whose time passed with no worker running must not stay scheduled.
    past = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    for i in range(100):
        jobs.count_run.at(past, f"past-{i}")
    assert len(ScheduledJobRegistry("default")) == 100
    started = time.monotonic()
    start_scheduling_worker(processes)
    wait_for(
        lambda: len(FinishedJobRegistry("default")) == 100,
        timeout=15,
        what="the 100 past-due jobs to finish",
    )
    assert time.monotonic() - started < 10  # process start-up included
    assert runs(client) == {f"past-{i}": 1 for i in range(100)}
    assert len(ScheduledJobRegistry("default")) == 0


def test_burst_worker_with_scheduler_promotes_again_on_the_next_run(
    processes: Processes, client: redis.Redis
) -> None:
    # CASES #4: a burst run must not leave its lock behind and block the next run.
    first = jobs.add.at(dt.datetime.now(UTC), 1, 1)
    output_of(processes.worker("--burst", "--with-scheduler"))
    assert first.status is JobStatus.FINISHED
    assert lock_holder(client) is None
    second = jobs.add.at(dt.datetime.now(UTC), 2, 2)
    output_of(processes.worker("--burst", "--with-scheduler"))
    assert second.result(timeout=1) == 4


def test_burst_worker_leaves_jobs_that_are_not_due_yet(
    processes: Processes, client: redis.Redis
) -> None:
    later = jobs.add.after(60, 1, 1)
    output_of(processes.worker("--burst", "--with-scheduler"))
    assert later.status is JobStatus.SCHEDULED


def test_standalone_scheduler_moves_due_jobs_onto_the_queue(
    processes: Processes, client: redis.Redis
) -> None:
    job = jobs.add.after(0.3, 1, 2)
    start_scheduler(processes)
    wait_for(lambda: job in Queue("default"), what="the job to be queued")
    assert job.status is JobStatus.QUEUED
    assert job not in ScheduledJobRegistry("default")


def test_scheduler_child_killed_alone_is_restarted_and_jobs_still_run(
    processes: Processes, client: redis.Redis
) -> None:
    # CASES #3: the worker lived on while its scheduler was dead; nothing was promoted.
    worker = start_scheduling_worker(processes)
    token = wait_for_holder(client)
    job = jobs.record.after(3, "after-kill")  # only the restarted scheduler can promote it
    os.kill(pid_of(token), signal.SIGKILL)
    started = job.result(timeout=15)
    assert job.scheduled_for is not None and started >= job.scheduled_for.timestamp()
    assert pid_of(wait_for_holder(client)) != pid_of(token)
    assert worker.process.poll() is None
    os.killpg(worker.process.pid, signal.SIGTERM)
    assert "restarting it" in worker.finish()


def test_scheduler_child_hands_its_lock_over_when_its_worker_is_killed(
    processes: Processes, client: redis.Redis
) -> None:
    worker = start_scheduling_worker(processes)
    wait_for_holder(client)
    os.kill(worker.process.pid, signal.SIGKILL)  # the worker alone; left unreaped (a zombie)
    killed_at = time.monotonic()
    wait_for(lambda: lock_holder(client) is None, what="the orphaned scheduler to stop")
    assert time.monotonic() - killed_at < LOCK_TTL_S - 1  # released, not expired


PROGRAMMATIC_WORKER = """
from tasks_rq import Worker

if __name__ == "__main__":  # the worker's child processes import this file again
    Worker(["default"], imports=["jobs"]).work(with_scheduler=True)
"""


def test_programmatic_worker_with_scheduler_runs_scheduled_jobs(
    processes: Processes, client: redis.Redis, redis_url: str, tmp_path
) -> None:
    script = tmp_path / "run_worker.py"
    script.write_text(PROGRAMMATIC_WORKER)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env=worker_env(redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(TESTS_DIR),
        start_new_session=True,
    )
    processes.started.append(process)
    job = jobs.add.after(0.3, 20, 22)
    assert job.result(timeout=15) == 42
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=15) == 0


def test_after_jobs_run_once_across_worker_restarts(
    processes: Processes, client: redis.Redis
) -> None:
    # CASES #7: delayed jobs held in worker memory were delivered again after restarts.
    for i in range(20):
        jobs.count_run.after(2.0, f"restart-{i}")
    first = start_scheduling_worker(processes)
    wait_for_holder(client)
    os.killpg(first.process.pid, signal.SIGKILL)
    second = start_scheduling_worker(processes)
    wait_for(lambda: subscribers(client) >= 2, what="the second worker to listen")
    os.killpg(second.process.pid, signal.SIGTERM)
    second.finish()
    start_scheduling_worker(processes)
    wait_for(
        lambda: len(FinishedJobRegistry("default")) == 20,
        timeout=20,
        what="the 20 delayed jobs to finish",
    )
    assert runs(client) == {f"restart-{i}": 1 for i in range(20)}


# --- one exact scheduler per queue --------------------------------------------------------


def test_lock_script_never_touches_a_lock_held_by_another_token(client: redis.Redis) -> None:
    lock = scripts_for(client).lock
    lock_key = keys.for_queue("default").lock
    assert lock(keys=[lock_key], args=["acquire", "owner", 3000]) == 1
    ttl_ms = client.pttl(lock_key)
    for action in ("acquire", "refresh", "release"):
        assert lock(keys=[lock_key], args=[action, "intruder", 60_000]) == 0
    assert lock_holder(client) == "owner"
    assert client.pttl(lock_key) <= ttl_ms


def test_promote_moves_nothing_once_the_lock_is_anothers(client: redis.Redis) -> None:
    job = jobs.add.at(dt.datetime.now(UTC) - dt.timedelta(seconds=1), 1, 2)
    scheduler = Scheduler(["default"], client)
    scheduler.pass_once()
    assert "default" in scheduler.owned and job.status is JobStatus.QUEUED
    stale = jobs.add.at(dt.datetime.now(UTC) - dt.timedelta(seconds=1), 3, 4)
    client.set(keys.for_queue("default").lock, "someone-else", px=3000)  # it stalled; lost
    assert scheduler.promote("default") == 0
    assert stale.status is JobStatus.SCHEDULED
    assert "default" not in scheduler.owned


def test_promote_queues_due_jobs_in_due_order_and_leaves_later_ones(client: redis.Redis) -> None:
    now = dt.datetime.now(UTC)
    due = [jobs.add.at(now - dt.timedelta(seconds=s), s, s) for s in (1, 3, 2)]
    later = jobs.add.at(now + dt.timedelta(seconds=60), 0, 0)
    scheduler = Scheduler(["default"], client)
    assert scheduler.run_once() == 3
    assert Queue("default").job_ids() == [due[1].id, due[2].id, due[0].id]
    assert later.status is JobStatus.SCHEDULED


def test_promote_moves_more_than_one_batch_in_one_pass(client: redis.Redis) -> None:
    past = time.time() - 1
    requests = [JobRequest("jobs.noop", None, None, JobOptions(), past)] * 2500
    Queue("default").enqueue(requests)
    assert Scheduler(["default"], client).run_once() == 2500
    assert len(Queue("default")) == 2500 and len(ScheduledJobRegistry("default")) == 0


def test_promote_drops_a_job_whose_hash_was_deleted(client: redis.Redis) -> None:
    job = jobs.add.at(dt.datetime.now(UTC) - dt.timedelta(seconds=1), 1, 2)
    client.delete(job.key)
    Scheduler(["default"], client).run_once()
    assert len(Queue("default")) == 0 and len(ScheduledJobRegistry("default")) == 0


def test_two_workers_with_schedulers_run_each_of_2000_jobs_exactly_once(
    processes: Processes, client: redis.Redis
) -> None:
    start_scheduling_worker(processes)
    start_scheduling_worker(processes)
    wait_for(lambda: subscribers(client) == 4, what="both workers and schedulers to listen")
    for i in range(2000):
        jobs.count_run.after(0.5 + i * 0.0005, f"j{i}")
    wait_for(
        lambda: len(FinishedJobRegistry("default")) == 2000, timeout=60, what="2,000 jobs to finish"
    )
    assert len(Queue("default")) == 0 and len(ScheduledJobRegistry("default")) == 0
    counts = runs(client)
    assert len(counts) == 2000
    assert set(counts.values()) == {1}


def holder_and_a_waiting_second(
    processes: Processes, client: redis.Redis
) -> tuple[LogReader, str]:
    """Start a worker whose scheduler holds the lock, then a second one listening."""
    holder = start_scheduling_worker(processes)
    token = wait_for_holder(client)
    start_scheduling_worker(processes)
    wait_for(lambda: subscribers(client) == 4, what="the second scheduler to listen")
    return holder, token


def test_sigkill_of_the_lock_holder_hands_the_queue_over_within_5_s(
    processes: Processes, client: redis.Redis
) -> None:
    holder, token = holder_and_a_waiting_second(processes, client)
    os.killpg(holder.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for_holder(client, other_than=token, timeout=10)
    assert time.monotonic() - killed_at <= 5.0
    assert jobs.add.after(0.1, 1, 2).result(timeout=5) == 3


def test_graceful_stop_of_the_lock_holder_hands_the_queue_over_within_1_s(
    processes: Processes, client: redis.Redis
) -> None:
    holder, token = holder_and_a_waiting_second(processes, client)
    os.killpg(holder.process.pid, signal.SIGTERM)
    stopped_at = time.monotonic()
    wait_for_holder(client, other_than=token, timeout=10)
    assert time.monotonic() - stopped_at <= 1.0


def test_stalled_scheduler_neither_promotes_nor_extends_the_new_owners_lock(
    processes: Processes, client: redis.Redis
) -> None:
    # CASES #1: after a stall past its TTL, the old holder must notice before promoting.
    first = start_scheduler(processes)
    first_token = wait_for_holder(client)
    second = start_scheduler(processes)
    wait_for(lambda: subscribers(client) == 2, what="the second scheduler to listen")
    os.kill(first.process.pid, signal.SIGSTOP)
    second_token = wait_for_holder(client, other_than=first_token, timeout=LOCK_TTL_S + 3)
    os.kill(second.process.pid, signal.SIGSTOP)  # the new owner stalls too: its lock must lapse
    lock_key = keys.for_queue("default").lock
    past = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
    made = [jobs.add.at(past, i, i) for i in range(50)]
    wait_for(lambda: 0 < client.pttl(lock_key) <= 2000, what="the new owner's lock to age")
    os.kill(first.process.pid, signal.SIGCONT)
    lowest_ttl_ms = [client.pttl(lock_key)]

    def new_owners_lock_lapsed() -> bool:
        snapshot = client.pipeline(transaction=True)
        snapshot.get(lock_key).pttl(lock_key).llen(keys.for_queue("default").queue)
        holder, ttl_ms, queued = snapshot.execute()
        if holder != second_token:
            return True
        assert queued == 0, "the resumed scheduler promoted under the new owner's lock"
        assert ttl_ms <= lowest_ttl_ms[0], "the resumed scheduler extended the new owner's lock"
        lowest_ttl_ms[0] = ttl_ms
        return False

    wait_for(new_owners_lock_lapsed, timeout=LOCK_TTL_S, what="the stalled lock to lapse")
    wait_for(lambda: len(Queue("default")) == 50, what="the first scheduler to promote")
    os.kill(second.process.pid, signal.SIGCONT)
    second.wait_for_text("lost the lock of queue default")
    wait_for(lambda: first.text().count("took the lock") == 2, what="the first to log")
    assert first.text().index("lost the lock") < first.text().rindex("took the lock")
    os.kill(second.process.pid, signal.SIGTERM)
    assert "stopped after promoting 0 job(s)" in second.finish()
    assert sorted(Queue("default").job_ids()) == sorted(job.id for job in made)


def test_graceful_stop_releases_only_the_locks_the_scheduler_holds(
    processes: Processes, client: redis.Redis
) -> None:
    # CASES #2: a scheduler serving two queues released a lock it never held.
    first = start_scheduler(processes, "q1")
    first_token = wait_for_holder(client, "q1")
    second = start_scheduler(processes, "q1", "q2", verbose=True)
    wait_for_holder(client, "q2")
    second.wait_for_text("queue q1 is held by another")
    os.kill(second.process.pid, signal.SIGTERM)
    second.finish()
    assert lock_holder(client, "q2") is None
    assert lock_holder(client, "q1") == first_token
    assert first.process.poll() is None


def test_dead_holders_lock_lapses_despite_another_scheduler_trying_for_it(
    processes: Processes, client: redis.Redis
) -> None:
    first = start_scheduler(processes, "q1")
    first_token = wait_for_holder(client, "q1")
    second = start_scheduler(processes, "q1", "q2", verbose=True)
    second.wait_for_text("queue q1 is held by another")
    os.kill(first.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: lock_holder(client, "q1") != first_token,
        timeout=LOCK_TTL_S + 2,
        what="the dead holder's lock to lapse",
    )
    assert time.monotonic() - killed_at <= LOCK_TTL_S + 0.5
    assert pid_of(wait_for_holder(client, "q1")) == second.process.pid


def test_scheduler_killed_mid_promotion_loses_and_doubles_no_job(
    processes: Processes, client: redis.Redis
) -> None:
    # CASES #6: due jobs left the schedule before reaching the queue; a crash lost them.
    total = 50_000
    past = time.time() - 1
    queue = Queue("default")
    ids: list[str] = []
    for _ in range(0, total, 1000):
        chunk = [JobRequest("jobs.noop", None, None, JobOptions(), past)] * 1000
        ids += [job.id for job in queue.enqueue(chunk)]
    first = start_scheduler(processes)
    os.setpriority(os.PRIO_PROCESS, first.process.pid, 19)  # stop it mid-pass on a busy box
    wait_for(lambda: client.llen(queue.keys.queue) > 0, interval=0, what="promotion to begin")
    os.kill(first.process.pid, signal.SIGSTOP)
    snapshot = client.pipeline(transaction=True)  # one instant, even if a batch is in flight
    snapshot.zrange(SCHEDULED, 0, -1)
    snapshot.lrange(queue.keys.queue, 0, -1)
    in_registry, queued = snapshot.execute()
    scheduled = set(in_registry)
    assert scheduled and queued, "the stop should land mid-pass"
    assert len(queued) == len(set(queued)) and not scheduled & set(queued)
    assert scheduled | set(queued) == set(ids)
    os.kill(first.process.pid, signal.SIGKILL)

    start_scheduler(processes)
    wait_for(
        lambda: client.llen(queue.keys.queue) == total,
        timeout=LOCK_TTL_S + 10,
        what="another scheduler to finish the pass",
    )
    assert client.zcard(SCHEDULED) == 0
    assert sorted(client.lrange(queue.keys.queue, 0, -1)) == sorted(ids)
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(queue.keys.job(job_id), "status")
    assert set(pipe.execute()) == {"queued"}
