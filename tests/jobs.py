"""Tasks the tests run in real worker processes (importable as ``jobs``)."""

from __future__ import annotations

import os
import time

import redis

from tasks_rq import task


def _log(name: str, value: object) -> None:
    client = redis.Redis.from_url(os.environ["TASKS_RQ_URL"])
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
    client = redis.Redis.from_url(os.environ["TASKS_RQ_URL"])
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
        _counter_client.append(redis.Redis.from_url(os.environ["TASKS_RQ_URL"]))
    _counter_client[0].hincrby("test:runs", name, 1)
    return now


@task(name="renamed-multiply")
def multiply(a: int, b: int) -> int:
    """A task whose registered name does not say its module (needs ``--import jobs``)."""
    return a * b
