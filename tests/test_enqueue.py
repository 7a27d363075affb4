"""Storing jobs: what lands in Redis, and bad input refused before anything is stored."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import redis

from tasks_rq import (
    ConnectionUnavailableError,
    DuplicateJobError,
    Job,
    JobStatus,
    Queue,
    ScheduledJobRegistry,
    SerializationError,
    configure,
)

import jobs


def test_delay_queues_a_job_with_its_arguments(client: redis.Redis) -> None:
    job = jobs.add.delay(2, 3)
    assert job.status is JobStatus.QUEUED
    assert job in Queue("default")
    assert job.args == [2, 3]
    assert job.task_name == "jobs.add"
    assert job.enqueued_at is not None and job.enqueued_at.tzinfo is not None


def test_keyword_arguments_are_kept_apart(client: redis.Redis) -> None:
    job = jobs.add.delay(a=1, b=2)
    assert job.args == [] and job.kwargs == {"a": 1, "b": 2}


def test_extra_types_round_trip(client: redis.Redis) -> None:
    value = {"when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
             "day": dt.date(2026, 1, 2), "id": uuid.UUID(int=7), "price": Decimal("1.10"),
             "raw": b"\x00\xff"}
    job = jobs.echo.delay(value)
    assert Job.fetch(job.id).args == [value]


def test_unserializable_argument_is_refused_naming_it(client: redis.Redis) -> None:
    with pytest.raises(SerializationError, match="'value'.*set"):
        jobs.echo.delay({1, 2})
    assert client.dbsize() == 0


def test_nan_argument_is_refused(client: redis.Redis) -> None:
    with pytest.raises(SerializationError, match="'value'"):
        jobs.echo.delay(float("nan"))
    assert client.dbsize() == 0


def test_wrong_arguments_are_refused_at_enqueue_time(client: redis.Redis) -> None:
    with pytest.raises(TypeError, match="jobs.add"):
        jobs.add.delay(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        jobs.add.delay(1, 2, c=3)  # type: ignore[call-arg]
    assert client.dbsize() == 0


def test_pickle_is_an_explicit_opt_in(client: redis.Redis) -> None:
    job = jobs.echo_pickled.delay({1, 2})
    assert Job.fetch(job.id).args == [{1, 2}]
    with pytest.raises(ValueError, match="declare it with @task"):
        jobs.echo.options(serializer="pickle")


def test_custom_job_id_pending_twice_raises(client: redis.Redis) -> None:
    first = jobs.add.options(job_id="daily-1").delay(1, 2)
    with pytest.raises(DuplicateJobError, match="daily-1.*queued"):
        jobs.add.options(job_id="daily-1").delay(5, 5)
    assert Job.fetch(first.id).args == [1, 2]
    assert len(Queue("default")) == 1


def test_custom_job_id_keep_returns_the_pending_job(client: redis.Redis) -> None:
    first = jobs.add.options(job_id="daily-2").delay(1, 2)
    again = jobs.add.options(job_id="daily-2", on_conflict="keep").delay(5, 5)
    assert again == first
    assert again.args == [1, 2]
    assert len(Queue("default")) == 1


def test_ended_job_id_can_be_reused(client: redis.Redis) -> None:
    first = jobs.add.options(job_id="reuse").delay(1, 2)
    first.cancel()
    second = jobs.add.options(job_id="reuse").delay(3, 4)
    assert second.status is JobStatus.QUEUED and second.args == [3, 4]
    assert "reuse" not in Queue("default").registry("canceled")


def test_map_queues_many_jobs_in_order(client: redis.Redis) -> None:
    made = jobs.add.map(range(2500), range(2500))
    assert len(made) == 2500
    assert len(Queue("default")) == 2500
    assert Queue("default").job_ids(1) == [made[0].id]


def test_map_refuses_bad_items_before_storing_the_chunk(client: redis.Redis) -> None:
    with pytest.raises(SerializationError):
        jobs.echo.map([1, {2}])
    assert client.dbsize() == 0


def test_cancel_queued_job(client: redis.Redis) -> None:
    job = jobs.add.delay(1, 2)
    assert job.cancel() is True
    assert job.status is JobStatus.CANCELED
    assert job not in Queue("default")


def test_delete_removes_every_trace(client: redis.Redis) -> None:
    job = jobs.add.after(60, 1, 2)
    assert job.delete() is True
    assert job not in ScheduledJobRegistry("default")
    assert client.dbsize() == 1  # only the set of known queues is left


def test_unreachable_redis_names_the_url_without_password(client: redis.Redis) -> None:
    configure(url="redis://user:s3cret@127.0.0.1:1/0")
    try:
        with pytest.raises(ConnectionUnavailableError) as caught:
            jobs.add.delay(1, 2)
    finally:
        configure(url=None)
    assert "s3cret" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_cancel_of_an_ended_job_returns_false(client: redis.Redis) -> None:
    job = jobs.add.delay(1, 2)
    assert job.cancel() is True
    assert job.cancel() is False
    assert job.status is JobStatus.CANCELED


def test_delay_works_right_after_the_server_closed_idle_connections(
    client: redis.Redis,
) -> None:
    jobs.add.delay(1, 1)
    killed = client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    job = jobs.add.delay(2, 2)
    assert job.status is JobStatus.QUEUED
    assert len(Queue("default")) == 2


@pytest.mark.parametrize("value", [{1: "a"}, {"nested": [{None: 1}]}, ({True: 0},)])
def test_dict_keys_json_would_change_are_refused(client: redis.Redis, value: object) -> None:
    with pytest.raises(SerializationError, match="not a str"):
        jobs.echo.delay(value)
    assert client.dbsize() == 0


def test_one_enqueue_with_the_same_id_twice_is_refused(client: redis.Redis) -> None:
    from tasks_rq.options import JobOptions
    from tasks_rq.queue import JobRequest

    request = JobRequest("jobs.noop", None, None, JobOptions(), job_id="twin")
    with pytest.raises(ValueError, match="twice"):
        Queue("default").enqueue([request, request])
    assert client.dbsize() == 0
