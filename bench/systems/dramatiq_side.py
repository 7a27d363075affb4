"""Dramatiq side of the benchmark (peers venv; only with run.py --with-peers).

    python dramatiq_side.py --url redis://127.0.0.1:PORT/0 --figure NAME --jobs N

The worker is the stock CLI with one process and one thread.
"""

from __future__ import annotations

import sys
import time

import peer_common
from common import Child, Ctx, FigureNotImplementedError, side_main


def _version() -> str:
    from importlib.metadata import version

    return version("dramatiq")


def _start_worker() -> Child:
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "dramatiq_tasks",
        "--processes",
        "1",
        "--threads",
        "1",
    ]
    return Child(argv, label="dramatiq")


def _noop():
    from dramatiq_tasks import noop

    return noop.send()


def _mark(key: str):
    from dramatiq_tasks import mark

    return mark.send(key)


def _late(due: float):
    from dramatiq_tasks import late

    delay_ms = max(0, round((due - time.time()) * 1000))
    return late.send_with_options(args=(due,), delay=delay_ms)


def _delayed_noop():
    from dramatiq_tasks import noop

    return noop.send_with_options(delay=3_600_000)


def enqueue_batch(ctx: Ctx):
    raise FigureNotImplementedError("dramatiq has no bulk enqueue call")


FIGURES = {
    "enqueue_one": lambda ctx: peer_common.enqueue_one(ctx, _noop),
    "enqueue_batch": enqueue_batch,
    "worker_noop": lambda ctx: peer_common.worker_noop(ctx, _noop, _mark, _start_worker),
    "lateness": lambda ctx: peer_common.lateness(ctx, _mark, _late, _start_worker),
    "memory_scheduled": lambda ctx: peer_common.memory(ctx, "memory_scheduled", _delayed_noop),
    "memory_queued": lambda ctx: peer_common.memory(ctx, "memory_queued", _noop),
    "idle_worker_rss": lambda ctx: peer_common.idle_worker_rss(ctx, _mark, _start_worker),
}

if __name__ == "__main__":
    side_main("dramatiq", _version, FIGURES)
