"""Dramatiq broker and actors for the peer comparison."""

from __future__ import annotations

import os
import time

import dramatiq
from common import LATENESS_KEY, URL_ENV, task_redis
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ[URL_ENV])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop() -> None:
    """Does nothing."""


@dramatiq.actor(queue_name="bench")
def mark(key: str) -> None:
    task_redis().set(key, repr(time.time()))


@dramatiq.actor(queue_name="bench")
def late(due: float) -> None:
    started = time.time()
    task_redis().rpush(LATENESS_KEY, f"{due!r},{started!r}")
