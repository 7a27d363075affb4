"""Huey side of the benchmark (peers venv; only with run.py --with-peers).

    python huey_side.py --url redis://127.0.0.1:PORT/0 --figure NAME --jobs N

The worker is the stock consumer: one thread worker plus its scheduler.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import peer_common
from common import Child, Ctx, FigureNotImplementedError, side_main


def _version() -> str:
    from importlib.metadata import version

    return version("huey")


def _start_worker() -> Child:
    argv = [
        sys.executable,
        "-m",
        "huey.bin.huey_consumer",
        "huey_tasks.huey",
        "-w",
        "1",
        "-k",
        "thread",
    ]
    return Child(argv, label="huey")


def _noop():
    from huey_tasks import noop

    return noop()


def _mark(key: str):
    from huey_tasks import mark

    return mark(key)


def _late(due: float):
    from huey_tasks import late

    return late.schedule(args=(due,), eta=datetime.fromtimestamp(due, tz=timezone.utc))


def enqueue_batch(ctx: Ctx):
    raise FigureNotImplementedError("huey has no bulk enqueue call")


def memory_scheduled(ctx: Ctx):
    raise FigureNotImplementedError(
        "huey keeps scheduled tasks on the plain queue until a consumer reads them"
    )


FIGURES = {
    "enqueue_one": lambda ctx: peer_common.enqueue_one(ctx, _noop),
    "enqueue_batch": enqueue_batch,
    "worker_noop": lambda ctx: peer_common.worker_noop(ctx, _noop, _mark, _start_worker),
    "lateness": lambda ctx: peer_common.lateness(ctx, _mark, _late, _start_worker),
    "memory_scheduled": memory_scheduled,
    "memory_queued": lambda ctx: peer_common.memory(ctx, "memory_queued", _noop),
    "idle_worker_rss": lambda ctx: peer_common.idle_worker_rss(ctx, _mark, _start_worker),
}

if __name__ == "__main__":
    side_main("huey", _version, FIGURES)
