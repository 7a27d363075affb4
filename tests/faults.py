"""Helpers for fault tests: follow a process's output live, find and signal processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis
from conftest import wait_for

from tasks_rq import keys


class Watched:
    """A running ``tasks-rq`` process whose output is read line by line as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return "".join(self.lines)

    def count(self, fragment: str) -> int:
        return sum(fragment in line for line in list(self.lines))

    def wait_for_line(self, fragment: str, timeout: float = 15) -> str:
        def found() -> str | None:
            return next((line for line in list(self.lines) if fragment in line), None)

        return str(wait_for(found, timeout, f"a line with {fragment!r}"))

    def wait_exit(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill_group(self, signum: int = signal.SIGKILL) -> None:
        """Signal the worker and every process of its group (children, scheduler)."""
        os.killpg(self.process.pid, signum)
        if signum == signal.SIGKILL:
            self.process.wait(timeout=10)


def is_running(pid: int) -> bool:
    """Return whether ``pid`` is a live process (a zombie is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] not in ("Z", "X")


def lock_holder_pid(client: redis.Redis, queue: str) -> int | None:
    """Return the process id of the scheduler holding ``queue``'s lock (token host.pid.hex)."""
    token = client.get(keys.for_queue(queue).lock)
    if not token:
        return None
    return int(str(token).rsplit(".", 2)[1])


def starts(client: redis.Redis, name: str) -> list[str]:
    """Return the entries tasks of tests/jobs.py logged under ``name``."""
    return list(client.lrange(f"test:log:{name}", 0, -1))  # type: ignore[arg-type]


class Stopwatch:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class CuttingProxy:
    """A TCP proxy in front of Redis that can lose one reply: the command runs, its answer
    never arrives, and the client sees its connection closed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def lose_reply_containing(self, marker: str) -> None:
        """Cut the connection whose next reply holds ``marker`` (once)."""
        self._marker = marker.encode()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._relay, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, True), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, is_reply: bool) -> None:
        try:
            while data := source.recv(65536):
                if is_reply and self._should_cut(data):
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def _should_cut(self, data: bytes) -> bool:
        with self._lock:
            if self._marker is None or self._marker not in data:
                return False
            self._marker = None
            self.cuts += 1
            return True
