"""Huey app and tasks for the peer comparison (module path: huey_tasks.huey)."""

from __future__ import annotations

import os
import time

from common import LATENESS_KEY, URL_ENV, task_redis
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ[URL_ENV])


@huey.task()
def noop() -> None:
    """Does nothing."""


@huey.task()
def mark(key: str) -> None:
    task_redis().set(key, repr(time.time()))


@huey.task()
def late(due: float) -> None:
    started = time.time()
    task_redis().rpush(LATENESS_KEY, f"{due!r},{started!r}")
