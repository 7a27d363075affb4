"""Measure the fault bounds of docs/guarantees.md with the default settings.

- recovery: a worker (default lease, 15 s) is SIGKILLed at a random moment of a long job; how
  long until the job starts again on another worker (with its own scheduler).
- takeover: the scheduler holding a queue's lock (default TTL, 3 s) is SIGKILLed, or stopped
  with SIGTERM; how long until another scheduler holds the lock.

Usage (from the repository root)::

    python tests/measure.py [--trials N]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import jobs  # noqa: E402
import redis  # noqa: E402
from conftest import Processes, RedisServer, wait_for  # noqa: E402
from faults import Watched, lock_holder_pid, starts  # noqa: E402

from tasks_rq import connection, keys  # noqa: E402
from tasks_rq import queue as queue_module  # noqa: E402


def _use(server: RedisServer) -> redis.Redis:
    connection.configure(url=server.url)
    queue_module._known_queues.clear()
    client = connection.connect(server.url)
    client.flushdb()
    return client


def recovery_once(server: RedisServer, trial: int) -> float:
    """Return seconds from SIGKILL of a busy worker to its job's next start."""
    client = _use(server)
    processes = Processes(server.url)
    try:
        first = Watched(processes.worker("--with-scheduler", "--name", f"first{trial}"))
        first.wait_for_line("started on")
        jobs.sleep_for.delay(300, "measure")
        wait_for(lambda: starts(client, "measure"), timeout=30, what="the job to start")
        second = Watched(processes.worker("--with-scheduler", "--name", f"second{trial}"))
        second.wait_for_line("started on")
        time.sleep(random.uniform(0, 6))  # a random moment between two lease renewals
        first.kill_group()
        killed = time.monotonic()
        wait_for(lambda: len(starts(client, "measure")) == 2, timeout=60, what="a second start")
        return time.monotonic() - killed
    finally:
        processes.stop_all()


def takeover_once(server: RedisServer, signum: int) -> float:
    """Return seconds from stopping the lock holder to another scheduler holding the lock."""
    client = _use(server)
    processes = Processes(server.url)
    lock = keys.for_queue("default").lock
    try:
        for _ in range(2):
            Watched(processes.start("scheduler", "default")).wait_for_line("serving")
        holder = wait_for(lambda: lock_holder_pid(client, "default"), what="a lock holder")
        old = client.get(lock)
        os.kill(holder, signum)
        stopped = time.monotonic()
        wait_for(lambda: client.get(lock) not in (None, old), timeout=30, what="a new holder")
        return time.monotonic() - stopped
    finally:
        processes.stop_all()


def _summary(values: list[float]) -> str:
    return (
        f"min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
        f"max {max(values):.2f} s over {len(values)} trials"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    trials = parser.parse_args().trials
    with tempfile.TemporaryDirectory(prefix="tasks-rq-measure-") as folder:
        server = RedisServer(Path(folder))
        server.start()
        try:
            killed = [takeover_once(server, signal.SIGKILL) for _ in range(trials)]
            print("scheduler takeover after SIGKILL:", _summary(killed))
            graceful = [takeover_once(server, signal.SIGTERM) for _ in range(trials)]
            print("scheduler takeover after SIGTERM:", _summary(graceful))
            recovery = [recovery_once(server, trial) for trial in range(trials)]
            print("job of a SIGKILLed worker started again:", _summary(recovery))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
