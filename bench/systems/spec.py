"""The list of benchmark figures and the metrics each one reports.

This module is the contract between ``bench/run.py`` and the per-system
scripts in this folder.  It uses the standard library only, because it is
imported from several virtualenvs.

A *figure* is one measurement procedure (``--figure NAME`` on a side script).
A figure reports one or more *metrics*; every metric becomes one row of the
final table.  ``better`` says how two systems are compared:

* ``"higher"``: bigger is better, ratio = tasks_rq / RQ
* ``"lower"``:  smaller is better, ratio = RQ / tasks_rq
* ``"zero"``:   closer to zero is better, ratio = |RQ| / |tasks_rq|

so a ratio above 1 always means "tasks_rq is better".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    unit: str
    better: str  # "higher", "lower" or "zero"
    summary: str


@dataclass(frozen=True)
class Figure:
    name: str
    metrics: tuple[Metric, ...]
    summary: str


FIGURES: tuple[Figure, ...] = (
    Figure(
        "enqueue_one",
        (Metric("enqueue_one", "jobs/s", "higher", "one enqueue call per job"),),
        "Enqueue N no-argument jobs one call at a time from one client.",
    ),
    Figure(
        "enqueue_batch",
        (Metric("enqueue_batch", "jobs/s", "higher", "bulk enqueue, 1000 per call"),),
        "Enqueue N no-argument jobs through the bulk API, 1000 jobs per call.",
    ),
    Figure(
        "worker_noop",
        (
            Metric("worker_noop", "jobs/s", "higher", "one in-process worker drains N no-ops"),
            Metric("worker_noop_fork", "jobs/s", "higher", "one fork-per-job worker drains no-ops"),
            Metric("worker_noop_cores", "jobs/s", "higher", "one worker, concurrency = CPU count"),
        ),
        "Pre-enqueue no-op jobs, then time a single worker draining them.",
    ),
    Figure(
        "lateness",
        (
            Metric("lateness_min", "ms", "zero", "earliest start vs due time"),
            Metric("lateness_p50", "ms", "zero", "median start vs due time"),
            Metric("lateness_p99", "ms", "zero", "99th percentile start vs due time"),
            Metric("lateness_max", "ms", "zero", "latest start vs due time"),
        ),
        "Jobs scheduled 20 ms apart from 2 s ahead; start time minus due time.",
    ),
    Figure(
        "promote_100k",
        (Metric("promote_100k", "s", "lower", "move 100k due jobs onto the queue"),),
        "Time for the scheduler to move 100,000 past-due jobs onto the queue.",
    ),
    Figure(
        "memory_scheduled",
        (Metric("memory_scheduled", "B/job", "lower", "Redis used_memory per scheduled job"),),
        "Redis used_memory growth per job for 10,000 scheduled no-arg jobs.",
    ),
    Figure(
        "memory_queued",
        (Metric("memory_queued", "B/job", "lower", "Redis used_memory per queued job"),),
        "Redis used_memory growth per job for 10,000 queued no-arg jobs.",
    ),
    Figure(
        "idle_worker_rss",
        (Metric("idle_worker_rss", "MB", "lower", "RSS of an idle worker's process tree"),),
        "Resident memory of one idle worker process tree, 2 s after it is ready.",
    ),
    Figure(
        "takeover",
        (Metric("takeover_s", "s", "lower", "dead scheduler's queue taken over (worst trial)"),),
        "Two schedulers serve a queue; SIGKILL the lock holder; time until the other holds it.",
    ),
    Figure(
        "recovery",
        (Metric("recovery_s", "s", "lower", "killed worker's job runs again (default lease)"),),
        "SIGKILL a worker running a job; time until another worker starts the job again.",
    ),
)

# Redis ceilings: measured once per run by redis_ceiling.py, not per system.
CEILING_FIGURE = Figure(
    "ceiling",
    (
        Metric("ceiling_rtt_lpush", "ops/s", "higher", "redis-py, one LPUSH per round trip"),
        Metric(
            "ceiling_rtt_raw", "ops/s", "higher", "one LPUSH per round trip on a bare Connection"
        ),
        Metric(
            "ceiling_pipelined_lpush", "ops/s", "higher", "redis-py, LPUSH pipelined 1000 at a time"
        ),
        Metric("redis_benchmark_lpush", "req/s", "higher", "redis-benchmark LPUSH, -P 1"),
        Metric("redis_benchmark_set", "req/s", "higher", "redis-benchmark SET, -P 1"),
        Metric("redis_benchmark_get", "req/s", "higher", "redis-benchmark GET, -P 1"),
    ),
    "What the Redis server and client can do with no job system in between.",
)

FIGURE_NAMES: tuple[str, ...] = tuple(f.name for f in FIGURES)
BY_NAME: dict[str, Figure] = {f.name: f for f in (*FIGURES, CEILING_FIGURE)}

# Status values a side script may report.
OK = "ok"
NOT_IMPLEMENTED = "not_implemented"
ERROR = "error"

# Constants shared by every side so that the systems do the same work.
BATCH_CHUNK = 1000
LATENESS_LEAD_S = 2.0
LATENESS_SPACING_S = 0.020
MEMORY_JOBS = 10_000
PROMOTE_TARGET = 100_000
IDLE_SETTLE_S = 2.0
