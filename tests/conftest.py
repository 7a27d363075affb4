"""Test fixtures: a real Redis server for the session, and real worker processes.

The session starts its own ``redis-server`` on a free port (or uses
``TASKS_RQ_TEST_REDIS_URL``, which must point at a disposable database: every test flushes
it). Worker and scheduler tests run ``tasks-rq`` in subprocesses against that server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tasks_rq
from tasks_rq import connection

TESTS_DIR = Path(__file__).resolve().parent
DEFAULT_DEADLINE_S = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A redis-server process owned by the tests (restartable, pausable, killable)."""

    def __init__(self, folder: Path, port: int | None = None, extra: list[str] | None = None):
        self.folder = folder
        self.port = port or free_port()
        self.extra = extra or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            pytest.exit("redis-server is not installed (apt-get install redis-server)", 2)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no",
                "--enable-debug-command", "local", *self.extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for(self.answers, timeout=10, what="redis-server to answer")

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait(timeout=10)


def wait_for(condition: Callable[[], Any], timeout: float = DEFAULT_DEADLINE_S,
             what: str = "condition", interval: float = 0.01) -> Any:
    """Return ``condition()``'s first truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("TASKS_RQ_TEST_REDIS_URL")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="tasks-rq-test-") as folder:
        server = RedisServer(Path(folder))
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A clean database, configured as the library's connection."""
    made = connection.connect(redis_url)
    made.flushdb()
    connection.configure(url=redis_url)
    from tasks_rq import queue as queue_module

    queue_module._known_queues.clear()
    yield made
    made.close()


def worker_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TASKS_RQ_URL"] = redis_url
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    return env


class Processes:
    """Starts tasks-rq subprocesses and makes sure none outlives its test."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "tasks_rq.cli", *args]
        process = subprocess.Popen(command, env=env or worker_env(self.redis_url),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   cwd=str(TESTS_DIR), start_new_session=True)
        self.started.append(process)
        return process

    def worker(self, *args: str) -> subprocess.Popen[str]:
        return self.start("worker", "--import", "jobs", *args)

    def run(self, *args: str, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``tasks-rq ARGS`` to the end; ``input`` is its standard input (default: none)."""
        command = [sys.executable, "-m", "tasks_rq.cli", *args]
        return subprocess.run(command, env=worker_env(self.redis_url), capture_output=True,
                              text=True, timeout=timeout, cwd=str(TESTS_DIR),
                              input=input if input is not None else "")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture()
def processes(redis_url: str, client: redis.Redis) -> Iterator[Processes]:
    made = Processes(redis_url)
    yield made
    made.stop_all()


def output_of(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """Wait for ``process`` to exit and return what it printed."""
    out, _ = process.communicate(timeout=timeout)
    return out or ""


__all__ = ["Processes", "RedisServer", "output_of", "tasks_rq", "wait_for", "worker_env"]
