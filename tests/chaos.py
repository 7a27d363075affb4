"""Chaos run: workers with schedulers killed at random, Redis restarted and stalled; nothing lost.

Several ``tasks-rq worker --with-scheduler`` processes serve one queue of ``.delay``,
``.after``, ``.at`` and ``.repeat`` jobs of ``jobs.chaos_step``, which records each start
(job id, runs so far, recoveries of this run, due time, start time). Meanwhile workers are
SIGKILLed (whole process group) and scheduler children are SIGKILLed alone, at random; Redis
(append-only file, fsync always) is SIGKILLed and restarted once, and stalled once with
SIGSTOP/SIGCONT (the long form also stalls one worker past its lease). Then every job must
have run at least once and ended; none may have started before its due time or been started
twice for the same run and recovery count (which a double promotion would cause); every
repeating job must have run ``times + 1`` times successfully; ``tasks-rq check`` must be clean.

Usage (from the repository root)::

    python tests/chaos.py            # short form, as in the test suite (about a minute)
    python tests/chaos.py --long     # long form (several minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import jobs  # noqa: E402
import redis  # noqa: E402
from conftest import RedisServer, worker_env  # noqa: E402

from tasks_rq import ConnectionUnavailableError, connection, keys  # noqa: E402
from tasks_rq import queue as queue_module  # noqa: E402
from tasks_rq.scheduler import MAX_RECOVERIES  # noqa: E402

QUEUE = "chaos"
KINDS = ("delay", "after", "at", "repeat")
FINAL = {"finished", "failed", "canceled"}


@dataclass(frozen=True)
class Plan:
    """The shape of one chaos run."""

    workers: int
    concurrency: int
    lease_s: float
    counts: dict[str, int]
    waves: int
    spread_s: float
    fault_s: float
    kill_every_s: tuple[float, float]
    redis_stall_s: float
    worker_stall_s: float
    drain_s: float


SHORT = Plan(
    workers=3,
    concurrency=2,
    lease_s=3.0,
    counts={"delay": 40, "after": 30, "at": 20, "repeat": 15},
    waves=5,
    spread_s=10.0,
    fault_s=24.0,
    kill_every_s=(2.0, 4.0),
    redis_stall_s=6.0,
    worker_stall_s=0.0,
    drain_s=45.0,
)
LONG = Plan(
    workers=4,
    concurrency=2,
    lease_s=3.0,
    counts={"delay": 400, "after": 250, "at": 150, "repeat": 100},
    waves=30,
    spread_s=30.0,
    fault_s=240.0,
    kill_every_s=(3.0, 7.0),
    redis_stall_s=7.0,
    worker_stall_s=6.0,
    drain_s=120.0,
)


@dataclass
class Spec:
    """One job the run enqueued and what it expects."""

    job_id: str
    kind: str
    runs: int


@dataclass
class Outcome:
    """What a run found: its table, the faults it injected and the failed criteria."""

    table: str
    faults: Counter[str]
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Fleet:
    """The worker processes of a run: start, kill, stall, stop."""

    def __init__(self, url: str, folder: Path, plan: Plan) -> None:
        self.url = url
        self.folder = folder
        self.plan = plan
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def start_worker(self) -> str:
        self.started += 1
        name = f"w{self.started}"
        command = [
            sys.executable,
            "-m",
            "tasks_rq.cli",
            "worker",
            QUEUE,
            "--with-scheduler",
            "--lease",
            str(self.plan.lease_s),
            "-c",
            str(self.plan.concurrency),
            "--import",
            "jobs",
            "--name",
            name,
        ]
        with open(self.folder / f"{name}.log", "wb") as log:
            self.workers[name] = subprocess.Popen(
                command,
                env=worker_env(self.url),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(TESTS_DIR),
                start_new_session=True,
            )
        return name

    def kill_worker(self, name: str) -> None:
        process = self.workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def owns(self, pid: int) -> bool:
        try:
            return os.getpgid(pid) in {process.pid for process in self.workers.values()}
        except ProcessLookupError:
            return False

    def stop_all(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.workers.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.workers.clear()


class Chaos:
    """One chaos run against a private Redis server in ``folder``."""

    def __init__(self, plan: Plan, folder: Path, seed: int, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.folder = folder
        self.rng = random.Random(seed)
        self.say = say
        self.server = RedisServer(folder, extra=["--appendonly", "yes", "--appendfsync", "always"])
        self.specs: dict[str, Spec] = {}
        self.faults: Counter[str] = Counter()
        self.fleet: Fleet | None = None
        self.client: redis.Redis | None = None
        self.waves = 0

    def run(self) -> Outcome:
        began = time.monotonic()
        self.server.start()
        try:
            self._setup()
            self._inject_faults()
            self._drain()
            assert self.fleet is not None
            self.fleet.stop_all()
            outcome = self._judge()
        finally:
            if self.fleet is not None:
                self.fleet.stop_all()
            self.server.stop()
        outcome.seconds = time.monotonic() - began
        return outcome

    def _setup(self) -> None:
        connection.configure(url=self.server.url)
        queue_module._known_queues.clear()
        self.client = connection.connect(self.server.url)
        self.fleet = Fleet(self.server.url, self.folder, self.plan)
        for _ in range(self.plan.workers):
            self.fleet.start_worker()

    # --- faults -------------------------------------------------------------------------

    def _timeline(self) -> list[tuple[float, str]]:
        plan = self.plan
        events = [(plan.fault_s * 0.35, "restart_redis"), (plan.fault_s * 0.65, "stall_redis")]
        if plan.worker_stall_s:
            events.append((plan.fault_s * 0.5, "stall_worker"))
        events += [(plan.fault_s * i / plan.waves, "enqueue") for i in range(plan.waves)]
        moment = self.rng.uniform(*plan.kill_every_s)
        while moment < plan.fault_s:
            events.append((moment, "kill"))
            moment += self.rng.uniform(*plan.kill_every_s)
        return sorted(events)

    def _inject_faults(self) -> None:
        began = time.monotonic()
        for moment, event in self._timeline():
            time.sleep(max(0.0, began + moment - time.monotonic()))
            getattr(self, f"_{event}")()

    def _kill(self) -> None:
        assert self.fleet is not None
        if self.rng.random() < 0.3 and self._kill_scheduler():
            return
        victims = self._killable_workers()
        if not victims:
            return
        victim = self.rng.choice(victims)
        self.fleet.kill_worker(victim)
        self.faults["worker SIGKILLed (process group)"] += 1
        self.fleet.start_worker()

    def _killable_workers(self) -> list[str]:
        # A job recovered MAX_RECOVERIES times fails as abandoned at the next loss (tested in
        # test_recovery.py); the run spares the worker that holds it, to judge repeats.
        assert self.fleet is not None and self.client is not None
        spared: set[str] = set()
        try:
            names = keys.for_queue(QUEUE)
            for job_id in self.client.zrange(names.started, 0, -1):  # type: ignore[union-attr]
                holder, recoveries = self.client.hmget(names.job(job_id), ["worker", "recoveries"])
                if holder and int(recoveries or 0) >= MAX_RECOVERIES:
                    spared.add(str(holder).split("/")[0])
        except redis.RedisError:
            return []
        return [name for name in self.fleet.workers if name not in spared]

    def _kill_scheduler(self) -> bool:
        assert self.fleet is not None and self.client is not None
        try:
            token = self.client.get(keys.for_queue(QUEUE).lock)
        except redis.RedisError:
            return False
        pid = int(str(token).rsplit(".", 2)[1]) if token else 0
        if not pid or not self.fleet.owns(pid):
            return False
        os.kill(pid, signal.SIGKILL)
        self.faults["scheduler child SIGKILLed"] += 1
        return True

    def _restart_redis(self) -> None:
        self.server.kill()
        self.server.start()
        self.faults["Redis SIGKILLed and restarted (append-only file)"] += 1

    def _stall_redis(self) -> None:
        assert self.server.process is not None
        self.server.process.send_signal(signal.SIGSTOP)
        time.sleep(self.plan.redis_stall_s)
        self.server.process.send_signal(signal.SIGCONT)
        self.faults[f"Redis stalled {self.plan.redis_stall_s:g} s (SIGSTOP)"] += 1

    def _stall_worker(self) -> None:
        assert self.fleet is not None
        process = self.fleet.workers[self.rng.choice(sorted(self.fleet.workers))]
        os.kill(process.pid, signal.SIGSTOP)
        time.sleep(self.plan.worker_stall_s)
        os.kill(process.pid, signal.SIGCONT)
        self.faults[f"worker stalled {self.plan.worker_stall_s:g} s (SIGSTOP)"] += 1

    # --- jobs ---------------------------------------------------------------------------

    def _enqueue(self) -> None:
        wave = self.waves
        self.waves += 1
        for kind in KINDS:
            for index in range(self.plan.counts[kind] // self.plan.waves):
                self._enqueue_one(kind, f"{kind}-{wave}-{index}")

    def _enqueue_one(self, kind: str, job_id: str) -> None:
        rng, step = self.rng, jobs.chaos_step.options(queue=QUEUE, job_id=job_id)
        args = (job_id, QUEUE, round(rng.uniform(0.02, 0.4), 3))
        runs = 1
        if kind == "delay":
            make: Callable[[], Any] = lambda: step.delay(*args)  # noqa: E731
        elif kind == "after":
            delay = rng.uniform(0, self.plan.spread_s)
            make = lambda: step.after(delay, *args)  # noqa: E731
        elif kind == "at":
            when = datetime.now() + timedelta(seconds=rng.uniform(0, self.plan.spread_s))
            make = lambda: step.at(when, *args)  # noqa: E731
        else:
            times = rng.randint(1, 3)
            gaps = [round(rng.uniform(0, 2), 2) for _ in range(rng.randint(1, 3))]
            make = lambda: step.repeat(times, gaps, *args)  # noqa: E731
            runs = times + 1
        self._enqueue_surely(job_id, make)
        self.specs[job_id] = Spec(job_id, kind, runs)

    def _enqueue_surely(self, job_id: str, make: Callable[[], Any]) -> None:
        # An enqueue that fails may still have been stored (its reply lost): with a custom
        # id, look before sending it again.
        assert self.client is not None
        key = keys.for_queue(QUEUE).job(job_id)
        while True:
            try:
                make()
                return
            except ConnectionUnavailableError:
                time.sleep(0.2)
            try:
                if self.client.exists(key):
                    return
            except redis.RedisError:
                time.sleep(0.2)

    def _drain(self) -> None:
        assert self.client is not None
        deadline = time.monotonic() + self.plan.drain_s
        while time.monotonic() < deadline:
            try:
                if all(status in FINAL for status in self._statuses().values()):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.5)

    def _statuses(self) -> dict[str, str | None]:
        assert self.client is not None
        names = keys.for_queue(QUEUE)
        pipe = self.client.pipeline(transaction=False)
        for job_id in self.specs:
            pipe.hget(names.job(job_id), "status")
        return dict(zip(self.specs, pipe.execute(), strict=True))

    # --- judging ------------------------------------------------------------------------

    def _judge(self) -> Outcome:
        assert self.client is not None
        starts: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in self.specs}
        for entry in self.client.smembers("chaos:starts"):  # type: ignore[union-attr]
            record = json.loads(entry)
            starts.setdefault(record["id"], []).append(record)
        names = keys.for_queue(QUEUE)
        pipe = self.client.pipeline(transaction=False)
        for job_id in self.specs:
            pipe.hgetall(names.job(job_id))
        fields = dict(zip(self.specs, pipe.execute(), strict=True))
        verdict = Verdict(self.specs, starts, fields)
        check_report = self._check()
        if not check_report.get("clean"):
            verdict.failures.append(f"tasks-rq check is not clean: {check_report}")
        table = "\n".join([verdict.table(self.faults, check_report), self._log_summary()])
        return Outcome(table, self.faults, verdict.failures)

    def _log_summary(self) -> str:
        text = "".join(
            path.read_text(errors="replace") for path in sorted(self.folder.glob("w*.log"))
        )
        seen = {
            "jobs requeued after a lost lease": "stopped renewing the lease; requeued",
            "outcomes dropped (lease lost)": "outcome dropped",
            "jobs given back after a lost claim reply": "whose reply was lost",
            "worker outages logged": "Redis unavailable",
            "tracebacks": "Traceback",
        }
        return "worker logs: " + "; ".join(
            f"{text.count(mark)} {what}" for what, mark in seen.items()
        )

    def _check(self) -> dict[str, Any]:
        command = [sys.executable, "-m", "tasks_rq.cli", "check", QUEUE, "--json"]
        done = subprocess.run(
            command, env=worker_env(self.server.url), capture_output=True, text=True, timeout=60
        )
        try:
            return dict(json.loads(done.stdout))
        except json.JSONDecodeError:
            return {"clean": False, "output": done.stdout + done.stderr}


class Verdict:
    """Judges the jobs of a run against the criteria and renders the table."""

    def __init__(
        self,
        specs: dict[str, Spec],
        starts: dict[str, list[dict[str, Any]]],
        fields: dict[str, dict[str, str]],
    ) -> None:
        self.specs = specs
        self.starts = starts
        self.fields = fields
        self.failures: list[str] = []
        self.rows = {kind: Counter[str]() for kind in KINDS}
        self.lateness: list[float] = []
        for spec in specs.values():
            self._judge_job(spec)

    def _judge_job(self, spec: Spec) -> None:
        row, runs_started = self.rows[spec.kind], self.starts.get(spec.job_id, [])
        fields = self.fields[spec.job_id]
        status, runs = fields.get("status"), int(fields.get("runs") or 0)
        row["jobs"] += 1
        row["starts"] += len(runs_started)
        row["re-runs"] += max(0, len(runs_started) - spec.runs)
        row[status or "missing"] += 1
        problems = []
        if not runs_started:
            problems.append("never started")
        if status not in FINAL:
            problems.append(f"ended as {status!r}, not in a final state")
        if status == "finished" and runs != spec.runs:
            problems.append(f"ran {runs} times successfully, expected {spec.runs}")
        early = [s for s in runs_started if s["due"] and s["started_at"] < s["due"]]
        row["early starts"] += len(early)
        if early:
            problems.append(f"started {len(early)} time(s) before its due time")
        twice = [key for key, n in Counter(_run_key(s) for s in runs_started).items() if n > 1]
        row["started twice"] += len(twice)
        if twice:
            problems.append(f"started twice for (runs, recoveries) {twice}: promoted twice?")
        self.lateness += [s["started_at"] - s["due"] for s in runs_started if s["due"]]
        self.failures += [f"job {spec.job_id} ({spec.kind}): {text}" for text in problems]

    def table(self, faults: Counter[str], check_report: dict[str, Any]) -> str:
        columns = [
            "jobs",
            "starts",
            "re-runs",
            "finished",
            "failed",
            "early starts",
            "started twice",
        ]
        lines = ["kind    " + "".join(f"{column:>15}" for column in columns)]
        total: Counter[str] = Counter()
        for kind, row in self.rows.items():
            total.update(row)
            lines.append(f"{kind:<8}" + "".join(f"{row[column]:>15}" for column in columns))
        lines.append("all     " + "".join(f"{total[column]:>15}" for column in columns))
        if self.lateness:
            ordered = sorted(self.lateness)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            lines.append(
                f"start after due time (s): min {ordered[0]:.3f}, "
                f"p50 {statistics.median(ordered):.3f}, p99 {p99:.3f}, "
                f"max {ordered[-1]:.3f}"
            )
        lines.append("faults: " + "; ".join(f"{n} x {what}" for what, n in sorted(faults.items())))
        problems = check_report.get("problem_counts", {})
        lines.append(f"tasks-rq check: {'clean' if check_report.get('clean') else problems}")
        lines.append(f"criteria failed: {len(self.failures)}")
        return "\n".join(lines)


def _run_key(start: dict[str, Any]) -> tuple[int, int]:
    return (start["runs"], start["recoveries"])


def run(
    plan: Plan, folder: Path, seed: int | None = None, say: Callable[[str], None] = print
) -> Outcome:
    """Run one chaos run in ``folder``; return its outcome (``failures`` empty if it passed)."""
    seed = int(os.environ.get("TASKS_RQ_CHAOS_SEED") or seed or time.time_ns() % 10**6)
    say(f"chaos seed {seed} (rerun with TASKS_RQ_CHAOS_SEED={seed})")
    return Chaos(plan, folder, seed, say).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="the long form (several minutes)")
    parser.add_argument("--seed", type=int, help="seed of the random choices")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tasks-rq-chaos-"))
    outcome = run(LONG if options.long else SHORT, folder, options.seed)
    print(outcome.table)
    print(f"took {outcome.seconds:.0f} s")
    for failure in outcome.failures[:50]:
        print("FAILED:", failure)
    if options.keep or outcome.failures:
        print(f"worker logs and Redis data kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
