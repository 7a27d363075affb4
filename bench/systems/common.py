"""Helpers shared by the side scripts (standard library + redis-py only).

Every side script runs as::

    python SIDE.py --url REDIS_URL --figure NAME --jobs N

and prints exactly one JSON line on stdout (anything else goes to stderr).
``side_main`` below does the argument parsing, the JSON line and the error
handling, so a side script only has to supply one function per figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import spec

HERE = os.path.dirname(os.path.abspath(__file__))
URL_ENV = "BENCH_REDIS_URL"

# Keys used by the marker tasks.  Every system's task module writes to these.
MARK_START = "bench:mark:start"
MARK_END = "bench:mark:end"
LATENESS_KEY = "bench:lateness"


class FigureNotImplementedError(Exception):
    """Raise from a figure function when the system has no way to do it."""


# --------------------------------------------------------------------------
# Running a side script


@dataclass
class Ctx:
    url: str
    figure: str
    jobs: int
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def redis(self):
        import redis

        return redis.Redis.from_url(self.url)


FigureFn = Callable[[Ctx], dict[str, float | None]]


def _on_sigterm(signum, frame):  # pragma: no cover - signal path
    raise SystemExit(128 + signum)


def side_main(system: str, version: Callable[[], str], figures: dict[str, FigureFn]) -> None:
    """Parse the standard arguments, run one figure, print one JSON line."""
    parser = argparse.ArgumentParser(description=f"{system} side of the benchmark")
    parser.add_argument("--url", required=True, help="redis://127.0.0.1:PORT/0")
    parser.add_argument("--figure", required=True, choices=sorted(spec.BY_NAME))
    parser.add_argument("--jobs", type=int, required=True, help="job count for this figure")
    args = parser.parse_args()

    # Task modules and worker subprocesses find the server through this.
    os.environ[URL_ENV] = args.url
    signal.signal(signal.SIGTERM, _on_sigterm)

    ctx = Ctx(url=args.url, figure=args.figure, jobs=args.jobs)
    out: dict[str, Any] = {"system": system, "figure": args.figure, "jobs": args.jobs}
    try:
        out["version"] = version()
    except Exception as exc:  # the import itself may be what is missing
        out["version"] = None
        ctx.notes.append(f"version unknown: {exc}")

    fn = figures.get(args.figure)
    started = time.perf_counter()
    try:
        if fn is None:
            raise FigureNotImplementedError(f"{system} has no '{args.figure}' measurement")
        metrics = fn(ctx)
        out["status"] = spec.OK
        out["metrics"] = metrics
    except FigureNotImplementedError as exc:
        out["status"] = spec.NOT_IMPLEMENTED
        out["metrics"] = {}
        ctx.notes.append(str(exc) or "not implemented")
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        out["status"] = spec.ERROR
        out["metrics"] = {}
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["extra"] = ctx.extra
    out["notes"] = ctx.notes
    sys.stdout.write(json.dumps(out, default=str) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Small utilities


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


def used_memory(conn) -> int:
    return int(conn.info("memory")["used_memory"])


def per_job_memory(conn, jobs: int, fill: Callable[[], None]) -> float:
    """Bytes of Redis used_memory added per job by ``fill()``."""
    before = used_memory(conn)
    fill()
    after = used_memory(conn)
    return (after - before) / jobs


def chunks(total: int, size: int):
    """Yield the sizes of consecutive chunks that add up to ``total``."""
    done = 0
    while done < total:
        n = min(size, total - done)
        yield n
        done += n


# --------------------------------------------------------------------------
# Processes


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                data = fh.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        rest = data[data.rfind(")") + 2 :].split()
        parents[int(name)] = int(rest[1])
    return parents


def process_tree(root: int) -> list[int]:
    """``root`` and all of its live descendants."""
    parents = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents:
            tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _status_kb(pid: int, field_name: str, filename: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{filename}", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def parent_of(pid: int) -> int:
    """The parent process id of ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return 0
    return int(data[data.rfind(")") + 2 :].split()[1])


def process_memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS (MB) of the single process ``pid``."""
    return {
        "rss_mb": round(_status_kb(pid, "VmRSS") / 1024.0, 2),
        "pss_mb": round(_status_kb(pid, "Pss", "smaps_rollup") / 1024.0, 2),
    }


def tree_memory_mb(root: int) -> dict[str, float]:
    """RSS (and PSS, which does not double-count shared pages) of a tree."""
    pids = process_tree(root)
    rss = sum(_status_kb(p, "VmRSS") for p in pids)
    pss = sum(_status_kb(p, "Pss", "smaps_rollup") for p in pids)
    return {"processes": len(pids), "rss_mb": rss / 1024.0, "pss_mb": pss / 1024.0}


class Child:
    """A subprocess in its own session whose whole tree is ended on stop()."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        label: str = "child",
        cpus: set[int] | None = None,
    ):
        """Start ``argv``; ``cpus``: run it on these CPUs instead of the caller's."""
        self.label = label
        # Kept open for the child's whole life and removed in stop().
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"bench-{label}-", suffix=".log", delete=False
        )
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, limit: int = 2000) -> str:
        try:
            with open(self.log.name, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-limit:]
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the tree, wait up to ``grace`` seconds, then SIGKILL it."""
        tree = process_tree(self.proc.pid) if self.alive() else []
        for pid in tree:
            _signal(pid, signal.SIGTERM)
        self.wait(grace)
        for pid in process_tree(self.proc.pid) if self.alive() else []:
            _signal(pid, signal.SIGKILL)
        for pid in tree:  # grandchildren that outlived their parent
            _signal(pid, signal.SIGKILL)
        self.wait(grace)
        try:
            self.log.close()
            os.unlink(self.log.name)
        except OSError:
            pass

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def python_child(
    script: str, args: list[str], label: str, env: dict[str, str] | None = None
) -> Child:
    """Start ``script`` from this folder with the current interpreter."""
    return Child([sys.executable, os.path.join(HERE, script), *args], env=env, label=label)


# --------------------------------------------------------------------------
# Timing a drain with marker jobs


def timed_drain(
    conn, n_jobs: int, deadline_s: float, is_alive: Callable[[], bool] | None = None
) -> float:
    """Wait for the end marker and return no-op jobs/s between the markers.

    The side enqueues: one ``mark(MARK_START)`` job, ``n_jobs`` no-op jobs,
    one ``mark(MARK_END)`` job, and then starts a single worker.  Each marker
    task stores ``time.time()`` under its key, so the interval covers exactly
    the no-op jobs and none of the worker's start-up.
    """
    finished = wait_until(
        lambda: conn.exists(MARK_END) or (is_alive is not None and not is_alive()),
        timeout=deadline_s,
        interval=0.05,
    )
    if not finished or not conn.exists(MARK_END):
        raise RuntimeError(f"worker did not finish {n_jobs} jobs within {deadline_s:.0f} s")
    start = float(conn.get(MARK_START))
    end = float(conn.get(MARK_END))
    return n_jobs / max(end - start, 1e-9)


def lateness_summary(conn, expected: int, ctx: Ctx) -> dict[str, float | None]:
    """Read the (due, started) pairs written by the lateness task."""
    raw = conn.lrange(LATENESS_KEY, 0, -1)
    diffs = []
    for item in raw:
        due, started = (float(x) for x in item.decode().split(","))
        diffs.append((started - due) * 1000.0)
    diffs.sort()
    ctx.extra["lateness_started"] = len(diffs)
    ctx.extra["lateness_expected"] = expected
    if len(diffs) < expected:
        ctx.notes.append(f"only {len(diffs)} of {expected} scheduled jobs ran before the deadline")
    if not diffs:
        raise RuntimeError("no scheduled job ran")
    return {
        "lateness_min": round(diffs[0], 2),
        "lateness_p50": round(percentile(diffs, 50), 2),
        "lateness_p99": round(percentile(diffs, 99), 2),
        "lateness_max": round(diffs[-1], 2),
    }


def lateness_plan(
    count: int, lead: float = spec.LATENESS_LEAD_S, spacing: float = spec.LATENESS_SPACING_S
):
    """Due times (epoch seconds) for ``count`` jobs starting ``lead`` s ahead."""
    base = time.time() + lead
    return [base + i * spacing for i in range(count)]


def wait_for_lateness_starts(conn, expected: int, dues: list[float]) -> bool:
    """Wait until ``expected`` lateness jobs recorded their start, or past the last due time."""
    return wait_until(
        lambda: conn.llen(LATENESS_KEY) >= expected,
        timeout=dues[-1] - time.time() + lateness_deadline(0),
        interval=0.05,
    )


def lateness_deadline(count: int) -> float:
    """How long to wait for all lateness jobs after scheduling them."""
    return spec.LATENESS_LEAD_S + count * spec.LATENESS_SPACING_S + 10.0


def task_redis():
    """A per-process client for task functions (reads BENCH_REDIS_URL)."""
    global _TASK_CONN
    pid = os.getpid()
    if _TASK_CONN is None or _TASK_CONN[0] != pid:
        import redis

        _TASK_CONN = (pid, redis.Redis.from_url(os.environ[URL_ENV]))
    return _TASK_CONN[1]


_TASK_CONN: tuple[int, Any] | None = None
