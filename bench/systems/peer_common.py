"""Procedures shared by the huey and dramatiq sides (peers venv only).

A peer side module supplies ``enqueue(fn_name, *args)``, ``start_worker()``
and ``schedule(due, ...)``; these helpers turn them into figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import spec
from common import (
    MARK_END,
    MARK_START,
    Child,
    Ctx,
    lateness_plan,
    lateness_summary,
    per_job_memory,
    timed_drain,
    tree_memory_mb,
    wait_for_lateness_starts,
    wait_until,
)

READY_KEY = "bench:worker:ready"


def wait_ready(
    ctx: Ctx, worker: Child, send_ready: Callable[[], None], timeout: float = 30.0
) -> None:
    """Send a marker job and wait until the worker has run it."""
    conn = ctx.redis()
    send_ready()
    if not wait_until(
        lambda: conn.exists(READY_KEY) or not worker.alive(), timeout=timeout, interval=0.05
    ):
        raise RuntimeError(
            f"worker did not run its first job within {timeout:.0f} s:\n" + worker.log_tail()
        )
    if not worker.alive():
        raise RuntimeError("worker exited early:\n" + worker.log_tail())


def enqueue_one(ctx: Ctx, send_noop: Callable[[], object]) -> dict[str, float | None]:
    for _ in range(20):
        send_noop()
    started = time.perf_counter()
    for _ in range(ctx.jobs):
        send_noop()
    return {"enqueue_one": round(ctx.jobs / (time.perf_counter() - started), 1)}


def worker_noop(
    ctx: Ctx, send_noop, send_mark, start_worker: Callable[[], Child]
) -> dict[str, float | None]:
    conn = ctx.redis()
    conn.delete(MARK_START, MARK_END)
    send_mark(MARK_START)
    for _ in range(ctx.jobs):
        send_noop()
    send_mark(MARK_END)
    with start_worker() as worker:
        rate = timed_drain(conn, ctx.jobs, deadline_s=30 + ctx.jobs * 0.02, is_alive=worker.alive)
    return {"worker_noop": round(rate, 1)}


def lateness(
    ctx: Ctx, send_mark, send_late: Callable[[float], object], start_worker
) -> dict[str, float | None]:
    conn = ctx.redis()
    with start_worker() as worker:
        wait_ready(ctx, worker, lambda: send_mark(READY_KEY))
        dues = lateness_plan(ctx.jobs)
        for due in dues:
            send_late(due)
        wait_for_lateness_starts(conn, ctx.jobs, dues)
    return lateness_summary(conn, ctx.jobs, ctx)


def memory(ctx: Ctx, metric: str, send_one: Callable[[], object]) -> dict[str, float | None]:
    conn = ctx.redis()
    send_one()  # create the queue's own keys first

    def fill():
        for _ in range(ctx.jobs):
            send_one()

    return {metric: round(per_job_memory(conn, ctx.jobs, fill), 1)}


def idle_worker_rss(ctx: Ctx, send_mark, start_worker) -> dict[str, float | None]:
    with start_worker() as worker:
        wait_ready(ctx, worker, lambda: send_mark(READY_KEY))
        time.sleep(spec.IDLE_SETTLE_S)
        tree = tree_memory_mb(worker.pid)
    ctx.extra["tree"] = {k: round(v, 2) for k, v in tree.items()}
    return {"idle_worker_rss": round(tree["rss_mb"], 2)}
