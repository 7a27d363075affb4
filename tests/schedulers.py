"""Helpers for tests that run real schedulers: who holds a queue's lock, and their logs."""

from __future__ import annotations

import subprocess
import threading

import redis
from conftest import Processes, wait_for
from redis.cluster import RedisCluster

from tasks_rq import keys

LATE_S = 0.5
"""How late a job may start after its due time in these tests: the scheduler itself is
within milliseconds (see docs/scheduling.md), but the CI box has 2 cores shared with other
test runs, so a process can wait a few hundred ms for a core."""

LOCK_TTL_S = 3.0
"""The scheduler lock's TTL (``tasks_rq.scheduler.LOCK_TTL_S``)."""


def lock_holder(client: redis.Redis, queue: str = "default") -> str | None:
    """Return the token of the scheduler holding ``queue``'s lock, if any."""
    value = client.get(keys.for_queue(queue).lock)
    return None if value is None else str(value)


def pid_of(token: str) -> int:
    """Return the process id in a scheduler token (``host.pid.random``)."""
    return int(token.rsplit(".", 2)[1])


def subscribers(client: redis.Redis, queue: str = "default") -> int:
    """Return how many connections listen on ``queue``'s wake channel (on any cluster node)."""
    if isinstance(client, RedisCluster):  # each node counts only its own subscribers
        every_node = {"target_nodes": RedisCluster.ALL_NODES}
        return int(client.pubsub_numsub(keys.wake_channel(queue), **every_node)[0][1])
    return int(client.pubsub_numsub(keys.wake_channel(queue))[0][1])


class LogReader:
    """Collects a process's output lines in a thread, so its pipe never fills up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def text(self) -> str:
        """Return everything read so far."""
        return "".join(self.lines)

    def wait_for_text(self, text: str, timeout: float = 15.0) -> None:
        """Wait until ``text`` appears in the output."""
        wait_for(lambda: text in self.text(), timeout, what=repr(text))

    def finish(self, timeout: float = 30.0) -> str:
        """Wait for the process to exit; return all its output."""
        self.process.wait(timeout=timeout)
        self._thread.join(timeout=5)
        return self.text()


def start_scheduling_worker(
    processes: Processes, *args: str, env: dict[str, str] | None = None
) -> LogReader:
    """Start ``tasks-rq worker --with-scheduler`` (warnings only) and read its output."""
    process = processes.start(
        "-q", "worker", "--import", "jobs", "--with-scheduler", *args, env=env
    )
    return LogReader(process)


def start_scheduler(processes: Processes, *queues: str, verbose: bool = False) -> LogReader:
    """Start a standalone ``tasks-rq scheduler`` and read its output."""
    flags = ["-v"] if verbose else []
    return LogReader(processes.start(*flags, "scheduler", *queues))


def wait_for_holder(
    client: redis.Redis,
    queue: str = "default",
    other_than: str | None = None,
    timeout: float = 15.0,
) -> str:
    """Wait until a scheduler (other than ``other_than``) holds ``queue``; return its token."""

    def holder() -> str | None:
        token = lock_holder(client, queue)
        return token if token is not None and token != other_than else None

    found: str = wait_for(holder, timeout, what=f"a scheduler to hold {queue}")
    return found
