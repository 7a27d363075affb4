"""Task functions that RQ workers import (as ``rq_tasks.noop`` etc.)."""

from __future__ import annotations

import time

from common import LATENESS_KEY, task_redis


def noop() -> None:
    """Does nothing: measures the job system, not the job."""


def mark(key: str) -> None:
    """Store the wall-clock time this job started under ``key``."""
    task_redis().set(key, repr(time.time()))


def late(due: float) -> None:
    """Record ``due,started`` so the harness can compute start lateness."""
    started = time.time()
    task_redis().rpush(LATENESS_KEY, f"{due!r},{started!r}")
