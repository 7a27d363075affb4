"""RQ side of the benchmark.  Runs inside bench/.venv-peers (rq==2.12.0).

    python rq_side.py --url redis://127.0.0.1:PORT/0 --figure NAME --jobs N

Uses RQ's public API only.  Workers run as subprocesses (rq_worker.py) and
import their tasks from rq_tasks.py, so PYTHONPATH must include this folder
(bench/run.py sets it).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import spec
from common import (
    MARK_END,
    MARK_START,
    Ctx,
    FigureNotImplementedError,
    chunks,
    lateness_plan,
    lateness_summary,
    per_job_memory,
    python_child,
    side_main,
    timed_drain,
    tree_memory_mb,
    wait_for_lateness_starts,
    wait_until,
)

FORK_WORKER_JOBS = 200  # the fork-per-job worker is slow; fewer jobs suffice


def _version() -> str:
    from importlib.metadata import version

    return version("rq")


def _queue(ctx: Ctx, name: str = "bench"):
    from rq import Queue

    return Queue(name, connection=ctx.redis())


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _worker(
    queue: str,
    kind: str,
    burst: bool = False,
    scheduler: bool = False,
    ready_key: str = "bench:worker:ready",
):
    args = ["--queue", queue, "--kind", kind, "--ready-key", ready_key]
    if burst:
        args.append("--burst")
    if scheduler:
        args.append("--with-scheduler")
    return python_child("rq_worker.py", args, label=f"rq-{kind}")


# --------------------------------------------------------------------------


def enqueue_one(ctx: Ctx):
    from rq_tasks import noop

    q = _queue(ctx)
    for _ in range(20):  # warm up the connection and imports
        q.enqueue(noop)
    started = time.perf_counter()
    for _ in range(ctx.jobs):
        q.enqueue(noop)
    elapsed = time.perf_counter() - started
    return {"enqueue_one": round(ctx.jobs / elapsed, 1)}


def enqueue_batch(ctx: Ctx):
    from rq import Queue
    from rq_tasks import noop

    q = _queue(ctx)
    q.enqueue_many([Queue.prepare_data(noop) for _ in range(20)])  # warm-up
    started = time.perf_counter()
    for n in chunks(ctx.jobs, spec.BATCH_CHUNK):
        q.enqueue_many([Queue.prepare_data(noop) for _ in range(n)])
    elapsed = time.perf_counter() - started
    return {"enqueue_batch": round(ctx.jobs / elapsed, 1)}


def _drain(ctx: Ctx, queue_name: str, kind: str, n_jobs: int) -> float:
    from rq import Queue
    from rq_tasks import mark, noop

    conn = ctx.redis()
    conn.delete(MARK_START, MARK_END)
    q = _queue(ctx, queue_name)
    q.enqueue(mark, MARK_START)
    for n in chunks(n_jobs, spec.BATCH_CHUNK):
        q.enqueue_many([Queue.prepare_data(noop) for _ in range(n)])
    q.enqueue(mark, MARK_END)
    per_job_budget = 0.02 if kind == "simple" else 0.2
    with _worker(queue_name, kind, burst=True) as worker:
        rate = timed_drain(
            conn, n_jobs, deadline_s=30 + n_jobs * per_job_budget, is_alive=worker.alive
        )
        worker.wait(10)
    return round(rate, 1)


def worker_noop(ctx: Ctx):
    simple = _drain(ctx, "bench_simple", "simple", ctx.jobs)
    fork_jobs = min(ctx.jobs, FORK_WORKER_JOBS)
    fork = _drain(ctx, "bench_fork", "fork", fork_jobs)
    ctx.extra["worker_noop_jobs"] = ctx.jobs
    ctx.extra["worker_noop_fork_jobs"] = fork_jobs
    ctx.notes.append(
        "worker_noop = SimpleWorker --burst; worker_noop_fork = Worker --burst (fork per job)"
    )
    return {"worker_noop": simple, "worker_noop_fork": fork}


def lateness(ctx: Ctx):
    from rq.scheduler import RQScheduler
    from rq_tasks import late

    conn = ctx.redis()
    q = _queue(ctx, "bench_late")
    with _worker("bench_late", "simple", scheduler=True) as worker:
        lock_key = RQScheduler.get_locking_key("bench_late")
        if not wait_until(
            lambda: conn.exists(lock_key) or not worker.alive(), timeout=30, interval=0.05
        ):
            raise RuntimeError("RQ scheduler did not take its lock within 30 s")
        if not worker.alive():
            raise RuntimeError("worker exited early:\n" + worker.log_tail())
        dues = lateness_plan(ctx.jobs)
        with conn.pipeline() as pipe:
            for due in dues:
                q.enqueue_at(_utc(due), late, due, pipeline=pipe)
            pipe.execute()
        wait_for_lateness_starts(conn, ctx.jobs, dues)
    ctx.notes.append("SimpleWorker with its scheduler; RQ rounds due times down to whole seconds")
    return lateness_summary(conn, ctx.jobs, ctx)


def promote_100k(ctx: Ctx):
    from rq.registry import ScheduledJobRegistry
    from rq.suspension import resume, suspend
    from rq_tasks import noop

    conn = ctx.redis()
    q = _queue(ctx, "bench_promote")
    registry = ScheduledJobRegistry(queue=q)
    past = _utc(time.time() - 3600)

    started = time.perf_counter()
    for n in chunks(ctx.jobs, spec.BATCH_CHUNK):
        with conn.pipeline() as pipe:
            for _ in range(n):
                q.enqueue_at(past, noop, pipeline=pipe)
            pipe.execute()
    schedule_s = time.perf_counter() - started
    ctx.extra["schedule_jobs_per_s"] = round(ctx.jobs / schedule_s, 1)
    if registry.count != ctx.jobs:
        raise RuntimeError(f"expected {ctx.jobs} scheduled jobs, registry holds {registry.count}")

    # Suspend job execution so the worker's scheduler process only promotes;
    # nothing consumes the queue while we count it.
    suspend(conn)
    try:
        with _worker(
            "bench_promote", "simple", scheduler=True, ready_key="bench:promote:ready"
        ) as worker:
            if not wait_until(
                lambda: conn.exists("bench:promote:ready") or not worker.alive(), timeout=30
            ):
                raise RuntimeError("worker did not start within 30 s")
            t0 = float(conn.get("bench:promote:ready") or time.time())
            deadline = 60 + ctx.jobs * 0.003
            done = wait_until(
                lambda: registry.count == 0 and q.count >= ctx.jobs,
                timeout=deadline,
                interval=0.05,
            )
            elapsed = time.time() - t0
            moved = q.count
    finally:
        resume(conn)

    ctx.extra["measured_jobs"] = ctx.jobs
    ctx.extra["measured_s"] = round(elapsed, 3)
    ctx.extra["moved"] = moved
    if not done:
        ctx.notes.append(f"deadline hit after {elapsed:.1f} s with {moved}/{ctx.jobs} jobs moved")
        if moved == 0:
            raise RuntimeError("RQ scheduler moved no jobs")
    per_job = elapsed / max(moved, 1)
    total = per_job * spec.PROMOTE_TARGET
    ctx.extra["extrapolated"] = moved != spec.PROMOTE_TARGET
    if moved != spec.PROMOTE_TARGET:
        ctx.notes.append(f"promote_100k extrapolated linearly from {moved} jobs in {elapsed:.2f} s")
    return {"promote_100k": round(total, 2)}


def memory_queued(ctx: Ctx):
    from rq import Queue
    from rq_tasks import noop

    conn = ctx.redis()
    q = _queue(ctx, "bench_mem_q")
    q.enqueue_many([Queue.prepare_data(noop)])  # create the queue's own keys first
    q.empty()

    def fill():
        for n in chunks(ctx.jobs, spec.BATCH_CHUNK):
            q.enqueue_many([Queue.prepare_data(noop) for _ in range(n)])

    return {"memory_queued": round(per_job_memory(conn, ctx.jobs, fill), 1)}


def memory_scheduled(ctx: Ctx):
    from rq_tasks import noop

    conn = ctx.redis()
    q = _queue(ctx, "bench_mem_s")
    later = _utc(time.time() + 3600)

    def fill():
        for n in chunks(ctx.jobs, spec.BATCH_CHUNK):
            with conn.pipeline() as pipe:
                for _ in range(n):
                    q.enqueue_at(later, noop, pipeline=pipe)
                pipe.execute()

    return {"memory_scheduled": round(per_job_memory(conn, ctx.jobs, fill), 1)}


def _idle_tree(ctx: Ctx, scheduler: bool) -> dict[str, float]:
    from rq import Worker

    conn = ctx.redis()
    key = f"bench:idle:{int(scheduler)}"
    with _worker("bench_idle", "fork", scheduler=scheduler, ready_key=key) as worker:
        ok = wait_until(
            lambda: (conn.exists(key) and Worker.count(connection=conn) >= 1) or not worker.alive(),
            timeout=30,
            interval=0.05,
        )
        if not ok or not worker.alive():
            raise RuntimeError("idle worker did not start:\n" + worker.log_tail())
        time.sleep(spec.IDLE_SETTLE_S)
        return tree_memory_mb(worker.pid)


def idle_worker_rss(ctx: Ctx):
    plain = _idle_tree(ctx, scheduler=False)
    with_sched = _idle_tree(ctx, scheduler=True)
    ctx.extra["plain"] = {k: round(v, 2) for k, v in plain.items()}
    ctx.extra["with_scheduler"] = {k: round(v, 2) for k, v in with_sched.items()}
    ctx.notes.append(
        "idle_worker_rss = default Worker (fork kind), no scheduler; "
        "extra has PSS and the figure with the scheduler"
    )
    return {"idle_worker_rss": round(plain["rss_mb"], 2)}


def takeover(ctx: Ctx):
    raise FigureNotImplementedError(
        "not re-run: RQ 2.12's scheduler lock outlives a killed holder by its whole TTL; "
        "measured once at 805 s on a 2-core machine like this one (after SIGKILL and "
        "SIGTERM alike)"
    )


def recovery(ctx: Ctx):
    raise FigureNotImplementedError(
        "not re-run: RQ 2.12 noticed a killed worker's job after 810 s, then failed it "
        "(never ran it again); measured once on a 2-core machine like this one"
    )


FIGURES = {
    "enqueue_one": enqueue_one,
    "enqueue_batch": enqueue_batch,
    "worker_noop": worker_noop,
    "lateness": lateness,
    "promote_100k": promote_100k,
    "memory_scheduled": memory_scheduled,
    "memory_queued": memory_queued,
    "idle_worker_rss": idle_worker_rss,
    "takeover": takeover,
    "recovery": recovery,
}

if __name__ == "__main__":
    side_main("rq", _version, FIGURES)
