"""Tasks the tests run in real worker processes (importable as ``jobs``)."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from tasks_rq import connection, task, topology


_scale_out_clients: dict[int, Any] = {}


def _redis(**options: Any) -> Any:
    """Return a client for TASKS_RQ_URL, which may name a Redis Cluster or a Sentinel set."""
    url = os.environ["TASKS_RQ_URL"]
    if not topology.is_scale_out(url):
        return redis.Redis.from_url(url, **options)
    if os.getpid() not in _scale_out_clients:  # one per process: it learns the topology once
        _scale_out_clients[os.getpid()] = connection.connect(url)
    return _scale_out_clients[os.getpid()]


def _log(name: str, value: object) -> None:
    client = _redis()
    client.rpush(f"test:log:{name}", f"{value}")


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(value: object) -> object:
    return value


@task
def noop() -> None:
    return None


@task
def fail(message: str = "kaboom") -> None:
    raise RuntimeError(message)


@task
def record(name: str) -> float:
    """Append the start time to test:log:<name>; return it."""
    now = time.time()
    _log(name, repr(now))
    return now


@task
def record_then_fail(name: str) -> None:
    _log(name, repr(time.time()))
    raise ValueError("failing on purpose")


@task
def flaky(name: str, failures: int) -> str:
    """Fail the first ``failures`` calls for ``name``, then succeed."""
    client = _redis()
    count = client.incr(f"test:flaky:{name}")
    _log(name, repr(time.time()))
    if count <= failures:
        raise RuntimeError(f"flaky failure {count}")
    return f"ok after {count}"


@task
def sleep_for(seconds: float, name: str = "sleep") -> float:
    _log(name, "start")
    time.sleep(seconds)
    _log(name, "end")
    return seconds


@task
def exit_hard(code: int = 3) -> None:
    os._exit(code)


@task
def abort() -> None:
    os.abort()


@task
def raise_system_exit() -> None:
    raise SystemExit(7)


@task
def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@task
def raise_unprintable() -> None:
    raise UnprintableError()


@task
def return_unserializable() -> object:
    return {1, 2, 3}


@task
def fork_and_exit() -> str:
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    return "parent returned"


def not_a_task() -> str:
    return "should never run"


_counter_client: list[redis.Redis] = []


@task
def count_run(name: str) -> float:
    """Add one to field <name> of the hash test:runs; return the start time."""
    now = time.time()
    if not _counter_client:
        _counter_client.append(_redis())
    _counter_client[0].hincrby("test:runs", name, 1)
    return now


@task(name="renamed-multiply")
def multiply(a: int, b: int) -> int:
    """A task whose registered name does not say its module (needs ``--import jobs``)."""
    return a * b


@task
def sleep_and_report_pid(name: str, seconds: float) -> int:
    """Append this process's id to test:log:<name>, then sleep; return the id."""
    _log(name, os.getpid())
    time.sleep(seconds)
    return os.getpid()


@task
def chaos_step(job_id: str, queue: str, seconds: float) -> str:
    """Record this start in the set chaos:starts, then work for ``seconds``.

    The record names the job, how many runs had succeeded before (``runs``), how often this
    run was recovered (``recoveries``), the due time and the start time. It is a set member
    with a random token, so a write retried after a lost reply is still recorded once.
    """
    import json
    import secrets

    from tasks_rq import keys

    started_at = time.time()
    client = _redis(socket_timeout=5, decode_responses=True)
    runs, recoveries, due = _patiently(
        lambda: client.hmget(keys.for_queue(queue).job(job_id), ["runs", "recoveries", "due"])
    )
    entry = json.dumps(
        {"id": job_id, "runs": int(runs or 0), "recoveries": int(recoveries or 0),
         "due": float(due) if due else None, "started_at": started_at,
         "pid": os.getpid(), "token": secrets.token_hex(8)}
    )
    _patiently(lambda: client.sadd("chaos:starts", entry))
    client.close()
    time.sleep(seconds)
    return job_id


def _patiently(call: Any) -> Any:
    """Return ``call()``, retrying while Redis restarts or stalls (up to two minutes)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@task
def fail_odd_calls(name: str) -> int:
    """Fail calls 1, 3, 5, ... for ``name`` and succeed on the others; log each start."""
    client = _redis()
    count = int(client.incr(f"test:odd:{name}"))
    _log(name, repr(time.time()))
    if count % 2:
        raise RuntimeError(f"odd call {count}")
    return count


@task(serializer="pickle")
def echo_pickled(value: object) -> object:
    """Return ``value``; declared with pickle, so sets and other Python objects travel."""
    return value


@task
def fork_and_return() -> str:
    """Fork, and let both copies return normally: only the original may answer."""
    os.fork()
    return "returned"
