"""tasks_rq side of the benchmark -- a stub for now.

    python tasks_rq_side.py --url redis://127.0.0.1:PORT/0 --figure NAME --jobs N

Runs with the project's own interpreter (the one running bench/run.py), with
PYTHONPATH = this folder + the repository root, so ``import tasks_rq`` and
``import common`` / ``import spec`` both work.

To fill a figure in, write a function ``fn(ctx) -> dict`` and add it to
FIGURES below.  ``ctx`` carries ``url``, ``jobs`` (the count run.py chose for
this figure), ``redis()`` (a redis-py client), and ``extra`` / ``notes`` for
anything worth reporting beside the numbers.  The function returns the
metrics listed for its figure in spec.py, e.g. ``{"enqueue_one": 2345.6}``.
A figure that is absent from FIGURES (or that raises
common.FigureNotImplementedError) is reported as "not_implemented"; any other
exception is reported as "error".  Print nothing else on stdout.

Put the task functions in a module of this folder (say tasks_rq_tasks.py,
like rq_tasks.py): worker subprocesses started with common.python_child() or
common.Child inherit PYTHONPATH and BENCH_REDIS_URL, so they can import it,
and common.task_redis() gives tasks a client.  Three tasks are needed:
noop(), mark(key) -> SET key time.time(), late(due) -> RPUSH
common.LATENESS_KEY "due,started".  Start workers through common.Child (its
own session; stop() ends the whole tree) and give every wait a deadline
(common.wait_until).

What each figure must do, so that it matches rq_side.py:

enqueue_one       enqueue ``jobs`` no-arg no-op jobs, one API call each,
                  after ~20 warm-up calls; return jobs/s.
enqueue_batch     the same through the bulk API, spec.BATCH_CHUNK per call.
worker_noop       enqueue mark(common.MARK_START), ``jobs`` no-ops,
                  mark(common.MARK_END); start ONE worker subprocess (see
                  common.python_child) and call common.timed_drain().
                  The markers bracket the no-ops only if jobs run one at a
                  time in queue order, so run the worker with concurrency 1.
                  ``worker_noop_fork`` is for a fork-per-job mode, if any
                  (use min(jobs, 200)); leave it out otherwise.
lateness          start a worker with its scheduler, wait until it is ready,
                  schedule ``jobs`` tasks at common.lateness_plan(jobs), each
                  task pushing "due,started" to common.LATENESS_KEY; wait up
                  to the last due time + common.lateness_deadline(0); return
                  common.lateness_summary(...).
promote_100k      schedule ``jobs`` jobs due in the past, start the
                  scheduler alone (nothing consuming), time until all are on
                  the queue; return seconds for spec.PROMOTE_TARGET jobs,
                  extrapolated linearly if ``jobs`` is smaller (say so in
                  ctx.notes and set ctx.extra["extrapolated"] = True).
memory_scheduled  used_memory growth per job for ``jobs`` jobs scheduled an
                  hour ahead (common.per_job_memory).
memory_queued     the same for ``jobs`` queued jobs.
idle_worker_rss   start the default worker idle, wait until it is ready,
                  sleep spec.IDLE_SETTLE_S, return
                  common.tree_memory_mb(pid)["rss_mb"].
"""

from __future__ import annotations

from common import Ctx, FigureNotImplementedError, side_main


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tasks_rq")
    except Exception:
        import tasks_rq

        return str(getattr(tasks_rq, "__version__", "unknown"))


def _not_yet(ctx: Ctx):
    raise FigureNotImplementedError(f"tasks_rq side of '{ctx.figure}' is not written yet")


FIGURES = {
    "enqueue_one": _not_yet,
    "enqueue_batch": _not_yet,
    "worker_noop": _not_yet,
    "lateness": _not_yet,
    "promote_100k": _not_yet,
    "memory_scheduled": _not_yet,
    "memory_queued": _not_yet,
    "idle_worker_rss": _not_yet,
}

if __name__ == "__main__":
    side_main("tasks_rq", _version, FIGURES)
