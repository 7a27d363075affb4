"""Tasks that tasks_rq workers run in the benchmark (``--import tasks_rq_tasks``).

Importing this module has no side effect beyond registering the tasks, so worker children
(started from multiprocessing's fork server) can import it safely.
"""

from __future__ import annotations

import time

from common import LATENESS_KEY, task_redis

from tasks_rq import task


@task
def noop() -> None:
    """Do nothing: measures the job system, not the job."""


@task
def noop_item(item: int) -> None:
    """Do nothing with one argument, so that ``map`` has something to map over."""


@task
def mark(key: str) -> None:
    """Store the wall-clock time this job started under ``key``."""
    task_redis().set(key, repr(time.time()))


@task
def late(due: float) -> None:
    """Record ``due,started`` so the harness can compute start lateness."""
    started = time.time()
    task_redis().rpush(LATENESS_KEY, f"{due!r},{started!r}")


@task
def hold(key: str, seconds: float) -> None:
    """Record this run's start time under the list ``key``, then sleep ``seconds``."""
    task_redis().rpush(key, repr(time.time()))
    time.sleep(seconds)
