"""tasks_rq side of the benchmark.

    python tasks_rq_side.py --url redis://127.0.0.1:PORT/0 --figure NAME --jobs N

Runs with the project's own interpreter (the one running bench/run.py), with
PYTHONPATH = this folder + the repository root, so ``import tasks_rq`` and
``import common`` / ``import spec`` both work.  Uses tasks_rq's public API:
``@task`` tasks from tasks_rq_tasks.py, ``delay`` / ``at`` / ``map``,
``Queue.enqueue`` with a list of ``JobRequest`` for bulk stores of no-argument
jobs (what ``map`` does per chunk), ``Scheduler``, and real ``tasks-rq
worker`` / ``tasks-rq scheduler`` processes (``python -m tasks_rq.cli``).

What each figure does (matching rq_side.py where RQ has the figure):

enqueue_one       ``noop.delay()`` ``jobs`` times after 20 warm-up calls.
enqueue_batch     ``noop_item.map(range(jobs))`` (1000 jobs per round trip;
                  one int argument per job, since ``map`` maps over items);
                  extra: the same count as no-argument ``JobRequest``s.
worker_noop       mark, ``jobs`` no-ops, mark; one ``tasks-rq worker --burst``
                  at concurrency 1; then again at concurrency = CPU count
                  (``worker_noop_cores``).  No fork-per-job mode exists.
lateness          a worker with ``--with-scheduler``; once its scheduler holds
                  the queue's lock, ``late.at(due)`` for every due time.
promote_100k      ``jobs`` jobs due an hour ago stored in bulk; the headline is
                  ``Scheduler(...).run_once()`` in-process; extra: the same
                  with a ``tasks-rq scheduler`` process (from its start, and
                  from when it took the lock).
memory_*          used_memory growth per no-argument job, 10,000 jobs.
idle_worker_rss   RSS of ``tasks-rq worker`` (concurrency 1, no scheduler):
                  main process, resource tracker, fork server, job child.
takeover          two ``tasks-rq scheduler`` processes; SIGKILL the holder of
                  the queue's lock; seconds until the other holds it (worst
                  of ``jobs`` trials; extra: every trial, and SIGTERM).
recovery          a worker with its scheduler runs a sleeping job, a second
                  one waits; SIGKILL the first worker's process tree; seconds
                  until the job starts again (default lease, 15 s).
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from datetime import datetime, timezone
from typing import Any

import spec
from common import (
    MARK_END,
    MARK_START,
    Child,
    Ctx,
    chunks,
    lateness_plan,
    lateness_summary,
    parent_of,
    per_job_memory,
    process_memory_mb,
    process_tree,
    side_main,
    timed_drain,
    tree_memory_mb,
    wait_for_lateness_starts,
    wait_until,
)

RECOVERY_KEY = "bench:recovery:starts"
DEFAULT_LEASE_S = 15.0


def _version() -> str:
    import tasks_rq

    return str(tasks_rq.__version__)


def _configure(ctx: Ctx) -> Any:
    """Point tasks_rq at the benchmark's server; return the library's own client."""
    from tasks_rq import configure
    from tasks_rq.connection import get_client

    configure(url=ctx.url)
    return get_client()


def _cli(ctx: Ctx, *args: str, label: str, cpus: set[int] | None = None) -> Child:
    """Start ``tasks-rq ARGS`` (warnings only) as a child in its own session."""
    argv = [sys.executable, "-m", "tasks_rq.cli", "--url", ctx.url, "-q", *args]
    return Child(argv, label=label, cpus=cpus)


def _worker(
    ctx: Ctx, queue: str, *args: str, label: str = "tasks_rq-worker", cpus: set[int] | None = None
) -> Child:
    argv = ["worker", queue, "--import", "tasks_rq_tasks", *args]
    return _cli(ctx, *argv, label=label, cpus=cpus)


def _bulk(queue: str, count: int, due: float | None = None) -> None:
    """Store ``count`` no-argument no-op jobs, 1000 per round trip (``due``: scheduled)."""
    from tasks_rq_tasks import noop

    from tasks_rq.queue import JobRequest, Queue

    target = Queue(queue)
    for n in chunks(count, spec.BATCH_CHUNK):
        target.enqueue([JobRequest(noop.name, None, None, noop.job_options, due)] * n)


def _subscribers(conn: Any, queue: str) -> int:
    from tasks_rq import keys

    return int(conn.pubsub_numsub(keys.wake_channel(queue))[0][1])


def _lock_holder(conn: Any, queue: str) -> str | None:
    """Token of the scheduler holding ``queue``'s lock (``conn`` may return bytes)."""
    from tasks_rq import keys

    value = conn.get(keys.for_queue(queue).lock)
    if isinstance(value, bytes):
        value = value.decode()
    return value


def _workers(conn: Any) -> int:
    from tasks_rq import keys

    return int(conn.zcard(keys.WORKERS))


def _pid_of(token: str) -> int:
    """Process id in a scheduler token (``host.pid.random``)."""
    return int(token.rsplit(".", 2)[1])


def _ready(child: Child, condition: Any, what: str, timeout: float = 30.0) -> None:
    if not wait_until(lambda: condition() or not child.alive(), timeout=timeout, interval=0.02):
        raise RuntimeError(f"{what} within {timeout:.0f} s:\n{child.log_tail()}")
    if not child.alive():
        raise RuntimeError(f"{child.label} exited early:\n{child.log_tail()}")


def _cpus() -> int:
    return os.cpu_count() or 1


# --------------------------------------------------------------------------


def enqueue_one(ctx: Ctx):
    from tasks_rq_tasks import noop

    _configure(ctx)
    task = noop.options(queue="bench")
    for _ in range(20):  # warm up the connection, the script cache and imports
        task.delay()
    started = time.perf_counter()
    for _ in range(ctx.jobs):
        task.delay()
    elapsed = time.perf_counter() - started
    _interleaved_ceiling(ctx, task)
    return {"enqueue_one": round(ctx.jobs / elapsed, 1)}


def _interleaved_ceiling(ctx: Ctx, task: Any, rounds: int = 9, per_round: int = 1000) -> None:
    """Alternate rounds of ``delay()`` and of the Redis ceilings in this one process.

    The single-client figures swing with whatever else the machine runs; rounds that
    alternate within one process see the same conditions, so their ratio is steadier than
    the ratio of figures measured a minute apart.
    """
    plain = ctx.redis()
    raw = plain.connection_pool.make_connection()
    value = b"x" * 100

    def rate(call: Any) -> float:
        started = time.perf_counter()
        for _ in range(per_round):
            call()
        return per_round / (time.perf_counter() - started)

    def raw_lpush() -> None:
        raw.send_command("LPUSH", "bench:ceiling", value)
        raw.read_response()

    of_redis_py, of_raw = [], []
    for _ in range(rounds):
        ours = rate(task.delay)
        of_redis_py.append(ours / rate(lambda: plain.lpush("bench:ceiling", value)))
        of_raw.append(ours / rate(raw_lpush))
    raw.disconnect()
    ctx.extra.update(
        interleaved_of_redis_py_loop=round(statistics.median(of_redis_py), 3),
        interleaved_of_raw_round_trip=round(statistics.median(of_raw), 3),
    )
    ctx.notes.append(
        f"delay() vs the ceilings, {rounds} interleaved rounds of {per_round} (median): "
        f"{statistics.median(of_redis_py):.0%} of a redis-py LPUSH loop, "
        f"{statistics.median(of_raw):.0%} of LPUSH on a bare connection"
    )


def enqueue_batch(ctx: Ctx):
    from tasks_rq_tasks import noop_item

    _configure(ctx)
    task = noop_item.options(queue="bench")
    task.map(range(20))  # warm-up
    started = time.perf_counter()
    task.map(range(ctx.jobs))
    elapsed = time.perf_counter() - started

    started = time.perf_counter()
    _bulk("bench_requests", ctx.jobs)
    ctx.extra["no_arg_requests_jobs_per_s"] = round(ctx.jobs / (time.perf_counter() - started), 1)
    ctx.notes.append(
        "enqueue_batch = noop_item.map(range(N)) (one int argument per job); extra has "
        "Queue.enqueue of no-argument JobRequests, 1000 per call"
    )
    return {"enqueue_batch": round(ctx.jobs / elapsed, 1)}


def _drain(
    ctx: Ctx, queue: str, n_jobs: int, concurrency: int, cpus: set[int] | None = None
) -> float:
    from tasks_rq_tasks import mark

    conn = ctx.redis()
    conn.delete(MARK_START, MARK_END)
    marker = mark.options(queue=queue)
    marker.delay(MARK_START)
    _bulk(queue, n_jobs)
    marker.delay(MARK_END)
    args = ("--burst", "--concurrency", str(concurrency))
    with _worker(ctx, queue, *args, label=f"tasks_rq-c{concurrency}", cpus=cpus) as worker:
        rate = timed_drain(conn, n_jobs, deadline_s=30 + n_jobs * 0.01, is_alive=worker.alive)
        worker.wait(10)
    return round(rate, 1)


def worker_noop(ctx: Ctx):
    _configure(ctx)
    one = _drain(ctx, "bench_c1", ctx.jobs, 1)
    cores = _cpus()
    many = _drain(ctx, f"bench_c{cores}", ctx.jobs, cores)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    ctx.extra.update(worker_noop_jobs=ctx.jobs, cores_concurrency=cores, usable_cpus=affinity)
    note = (
        f"tasks-rq worker --burst at concurrency 1 and {cores} (the CPU count); the worker "
        f"may use {affinity} CPU(s) here. At concurrency > 1 the markers bracket the no-ops "
        "to within a few jobs"
    )
    if affinity < cores:  # run.py pinned redis-server to a CPU of its own
        every_cpu = set(range(cores))
        free_one = _drain(ctx, "bench_free_c1", ctx.jobs, 1, every_cpu)
        free_many = _drain(ctx, f"bench_free_c{cores}", ctx.jobs, cores, every_cpu)
        ctx.extra.update(unpinned_c1=free_one, unpinned_cores=free_many)
        note += (
            f"; with the worker free to use every CPU (sharing redis-server's): "
            f"{free_one:,.0f} jobs/s at concurrency 1, {free_many:,.0f} at {cores}"
        )
    ctx.notes.append(note)
    return {"worker_noop": one, "worker_noop_cores": many}


def lateness(ctx: Ctx):
    from tasks_rq_tasks import late

    conn = ctx.redis()
    _configure(ctx)
    queue = "bench_late"
    with _worker(ctx, queue, "--with-scheduler") as worker:
        _ready(
            worker,
            lambda: _lock_holder(conn, queue) and _subscribers(conn, queue) >= 2,
            "the worker's scheduler did not take the lock",
        )
        task = late.options(queue=queue)
        dues = lateness_plan(ctx.jobs)
        for due in dues:
            task.at(datetime.fromtimestamp(due, tz=timezone.utc), due)
        wait_for_lateness_starts(conn, ctx.jobs, dues)
    ctx.notes.append("tasks-rq worker --with-scheduler (concurrency 1); late.at(due) per job")
    return lateness_summary(conn, ctx.jobs, ctx)


def promote_100k(ctx: Ctx):
    from tasks_rq import Scheduler
    from tasks_rq.connection import connect

    conn = ctx.redis()
    _configure(ctx)
    queue = "bench_promote"
    in_process_s = _time_run_once(ctx, conn, queue, Scheduler, connect)
    process_s, from_lock_s = _time_scheduler_process(ctx, conn, queue)

    scale = spec.PROMOTE_TARGET / ctx.jobs
    ctx.extra.update(
        measured_jobs=ctx.jobs,
        run_once_s=round(in_process_s, 3),
        process_from_start_s=round(process_s, 3),
        process_from_lock_s=round(from_lock_s, 3),
        extrapolated=ctx.jobs != spec.PROMOTE_TARGET,
    )
    ctx.notes.append(
        f"promote_100k = Scheduler.run_once() in-process ({in_process_s:.2f} s for "
        f"{ctx.jobs}); a tasks-rq scheduler process took {process_s:.2f} s from its start "
        f"({from_lock_s:.2f} s from taking the lock)"
    )
    if ctx.jobs != spec.PROMOTE_TARGET:
        ctx.notes.append(f"promote_100k extrapolated linearly from {ctx.jobs} jobs")
    return {"promote_100k": round(in_process_s * scale, 3)}


def _schedule_past(ctx: Ctx, conn: Any, queue: str) -> None:
    from tasks_rq import ScheduledJobRegistry

    conn.flushdb()
    started = time.perf_counter()
    _bulk(queue, ctx.jobs, due=time.time() - 3600)
    ctx.extra["schedule_jobs_per_s"] = round(ctx.jobs / (time.perf_counter() - started), 1)
    count = ScheduledJobRegistry(queue).count
    if count != ctx.jobs:
        raise RuntimeError(f"expected {ctx.jobs} scheduled jobs, registry holds {count}")


def _time_run_once(ctx: Ctx, conn: Any, queue: str, scheduler_cls: Any, connect: Any) -> float:
    _schedule_past(ctx, conn, queue)
    scheduler = scheduler_cls([queue], connect(ctx.url))
    started = time.perf_counter()
    moved = scheduler.run_once()
    elapsed = time.perf_counter() - started
    from tasks_rq import Queue

    if moved != ctx.jobs or Queue(queue, conn).count != ctx.jobs:
        raise RuntimeError(f"run_once moved {moved} of {ctx.jobs} jobs")
    return elapsed


def _time_scheduler_process(ctx: Ctx, conn: Any, queue: str) -> tuple[float, float]:
    from tasks_rq import Queue

    _schedule_past(ctx, conn, queue)
    target = Queue(queue, conn)
    lock_seen: list[float] = []
    started = time.perf_counter()
    with _cli(ctx, "scheduler", queue, label="tasks_rq-scheduler") as scheduler:

        def moved() -> bool:
            if not lock_seen and _lock_holder(conn, queue):
                lock_seen.append(time.perf_counter())
            return target.count >= ctx.jobs

        _ready(scheduler, moved, "the scheduler did not move every job", 60 + ctx.jobs * 0.003)
        done = time.perf_counter()
    return done - started, done - (lock_seen[0] if lock_seen else started)


def memory_queued(ctx: Ctx):
    conn = ctx.redis()
    _configure(ctx)
    _bulk("bench_mem_q", 1)  # create the queue's own keys first
    fill = lambda: _bulk("bench_mem_q", ctx.jobs)  # noqa: E731
    return {"memory_queued": round(per_job_memory(conn, ctx.jobs, fill), 1)}


def memory_scheduled(ctx: Ctx):
    conn = ctx.redis()
    _configure(ctx)
    later = time.time() + 3600
    _bulk("bench_mem_s", 1, due=later)
    fill = lambda: _bulk("bench_mem_s", ctx.jobs, due=later)  # noqa: E731
    ctx.notes.append("memory_*: no-argument jobs stored in bulk (the same fields .at() stores)")
    return {"memory_scheduled": round(per_job_memory(conn, ctx.jobs, fill), 1)}


def _members(root: int) -> list[dict[str, Any]]:
    """Each process of the tree under ``root``: what it is and its RSS / PSS in MB."""
    tree = process_tree(root)
    parents = {pid: parent_of(pid) for pid in tree}
    members = []
    for pid in tree:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pid == root:
            kind = "worker main"
        elif "resource_tracker" in command:
            kind = "resource tracker"
        elif parents.get(pid) == root:
            kind = "fork server"
        else:
            kind = "child of the fork server (job runner or scheduler)"
        members.append({"kind": kind, **process_memory_mb(pid)})
    return members


def _idle_tree(ctx: Ctx, conn: Any, scheduler: bool) -> dict[str, Any]:
    queue = f"bench_idle{int(scheduler)}"
    args = ("--with-scheduler",) if scheduler else ()
    conn.flushdb()
    with _worker(ctx, queue, *args, label="tasks_rq-idle") as worker:
        _ready(
            worker,
            lambda: _subscribers(conn, queue) >= 1 + scheduler and _workers(conn) >= 1,
            "the idle worker was not ready",
        )
        time.sleep(spec.IDLE_SETTLE_S)
        tree: dict[str, Any] = {k: round(v, 2) for k, v in tree_memory_mb(worker.pid).items()}
        tree["members"] = _members(worker.pid)
        return tree


def idle_worker_rss(ctx: Ctx):
    conn = ctx.redis()
    plain = _idle_tree(ctx, conn, scheduler=False)
    with_scheduler = _idle_tree(ctx, conn, scheduler=True)
    ctx.extra.update(plain=plain, with_scheduler=with_scheduler)
    ctx.notes.append(
        f"idle_worker_rss = tasks-rq worker, concurrency 1, no scheduler: "
        f"{', '.join(m['kind'] for m in plain['members'])}; {plain['pss_mb']:.1f} MB PSS; "
        "with --with-scheduler (one more fork server child): "
        f"{with_scheduler['rss_mb']:.1f} MB RSS, {with_scheduler['pss_mb']:.1f} MB PSS"
    )
    return {"idle_worker_rss": plain["rss_mb"]}


def takeover(ctx: Ctx):
    conn = ctx.redis()
    queue = "bench_takeover"
    trials: list[float] = []
    children: list[Child] = []
    try:
        children.append(_scheduler_child(ctx, conn, queue, expect=1))
        for _ in range(ctx.jobs):
            children.append(_scheduler_child(ctx, conn, queue, expect=2))
            trials.append(_kill_holder(conn, queue, signal.SIGKILL))
        children.append(_scheduler_child(ctx, conn, queue, expect=2))
        graceful = _kill_holder(conn, queue, signal.SIGTERM)
    finally:
        for child in children:
            child.stop()
    ctx.extra.update(
        sigkill_trials_s=[round(t, 3) for t in trials],
        sigkill_median_s=round(statistics.median(trials), 3),
        sigterm_s=round(graceful, 3),
    )
    ctx.notes.append(
        f"takeover_s = worst of {len(trials)} SIGKILLs of the lock holder (median "
        f"{statistics.median(trials):.2f} s; bound: lock TTL 3 s + lock round 0.5 s); "
        f"after SIGTERM the lock changed hands in {graceful * 1000:.0f} ms"
    )
    return {"takeover_s": round(max(trials), 3)}


def _scheduler_child(ctx: Ctx, conn: Any, queue: str, expect: int) -> Child:
    child = _cli(ctx, "scheduler", queue, label="tasks_rq-scheduler")
    _ready(
        child,
        lambda: _subscribers(conn, queue) >= expect and _lock_holder(conn, queue),
        "the scheduler did not start",
    )
    time.sleep(0.6)  # past the newcomer's first lock round, which found the lock taken
    return child


def _kill_holder(conn: Any, queue: str, signum: int) -> float:
    token = _lock_holder(conn, queue)
    if token is None:
        raise RuntimeError("no scheduler holds the lock")
    os.kill(_pid_of(token), signum)
    killed = time.perf_counter()
    if not wait_until(
        lambda: _lock_holder(conn, queue) not in (None, token), timeout=30, interval=0.002
    ):
        raise RuntimeError("no scheduler took the queue over within 30 s")
    return time.perf_counter() - killed


def recovery(ctx: Ctx):
    results = [_recover_once(ctx, trial) for trial in range(ctx.jobs)]
    ctx.extra.update(trials_s=[round(r, 3) for r in results], lease_s=DEFAULT_LEASE_S)
    ctx.notes.append(
        "recovery_s = worst of SIGKILLing a worker (main process and children) mid-job, a "
        "second worker with its scheduler waiting; bound: lease 15 s after the last renewal "
        "(every 5 s) + maintenance pass 1 s + claim"
    )
    return {"recovery_s": round(max(results), 3)}


def _recover_once(ctx: Ctx, trial: int) -> float:
    from tasks_rq_tasks import hold

    conn = ctx.redis()
    conn.flushdb()
    _configure(ctx)
    queue = "bench_recovery"
    first = _worker(ctx, queue, "--with-scheduler", label="tasks_rq-first")
    second: Child | None = None
    try:
        _ready(first, lambda: _subscribers(conn, queue) >= 2, "the first worker did not start")
        hold.options(queue=queue).delay(RECOVERY_KEY, 120.0)
        _ready(first, lambda: conn.llen(RECOVERY_KEY) >= 1, "the job did not start")
        second = _worker(ctx, queue, "--with-scheduler", label="tasks_rq-second")
        _ready(second, lambda: _subscribers(conn, queue) >= 4, "the second worker did not start")
        time.sleep(trial * 2.3 % (DEFAULT_LEASE_S / 3))  # vary the kill against the renewals
        tree = process_tree(first.pid)
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        killed = time.time()
        _ready(second, lambda: conn.llen(RECOVERY_KEY) >= 2, "the job did not run again", 90)
        return float(conn.lindex(RECOVERY_KEY, 1)) - killed
    finally:
        first.stop(grace=1)
        if second is not None:
            second.stop(grace=1)


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
    side_main("tasks_rq", _version, FIGURES)
