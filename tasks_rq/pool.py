"""The child processes that run jobs for a worker.

A worker keeps ``concurrency`` children, started once and reused for job after job. Each
child runs one job at a time: the worker sends it a job over a pipe (or, for tasks it has
seen end in a few milliseconds, a short batch of them) and gets back one outcome per job.
A job that crashes its child (``os._exit``, a segfault, ``abort``) takes only that child
down; the worker fails the job, starts a new child, and goes on. A job that runs past its
timeout is stopped by killing its child. Children ignore SIGINT and SIGTERM: the worker
alone decides when a job is stopped, so Ctrl-C in a terminal never kills a running job.
A child exits as soon as its worker is gone (SIGKILL, out-of-memory kill), so a job whose
lease will be recovered does not run on unsupervised.

Children are started with multiprocessing's ``forkserver`` method on Linux (``spawn``
elsewhere): each starts from a clean single-threaded process, imports ``tasks_rq`` and the
worker's ``--import`` modules, and imports each task's module on first use.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from tasks_rq import serializers
from tasks_rq.errors import SerializationError

logger = logging.getLogger(__name__)

WATCH_POLL_S = 1.0
WORKER_GONE_EXIT_CODE = 70


@dataclass(frozen=True)
class Assignment:
    """A job sent to a child: what to call and with what."""

    job_id: str
    task_name: str
    serializer: str
    args: str | None
    kwargs: str | None


@dataclass(frozen=True)
class Outcome:
    """What a child reports for one job."""

    job_id: str
    is_success: bool
    payload: str
    started_at: float
    ended_at: float


def _context() -> Any:
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["tasks_rq.pool", "tasks_rq.registry"])
        _start_forkserver_deaf_to_sigterm()
    return context


def _start_forkserver_deaf_to_sigterm() -> None:
    # A SIGTERM sent to the whole process group (systemd, kill -- -PGID) must not kill the
    # fork server: the worker would lose track of its children. An ignored signal stays
    # ignored across exec, so start the server while SIGTERM is ignored.
    import multiprocessing.forkserver as forkserver
    import threading

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_exception(exc: BaseException) -> str:
    """Return the formatted traceback of ``exc``, even if its ``str()`` raises."""
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        frames = "".join(traceback.format_tb(exc.__traceback__))
        return (
            f"Traceback (most recent call last):\n{frames}{type(exc).__qualname__}: "
            "<the exception's message could not be turned into text>\n"
        )


def decode_arguments(assignment: Assignment) -> tuple[list[Any], dict[str, Any]]:
    """Return the positional and keyword arguments stored with a job.

    Raises:
        SerializationError: the stored arguments are not what the serializer wrote (a list
            and a dict of names), or the serializer is unknown.
    """
    try:
        serializer = serializers.get(assignment.serializer)
        args = serializer.loads(assignment.args) if assignment.args else []
        kwargs = serializer.loads(assignment.kwargs) if assignment.kwargs else {}
    except Exception as exc:
        raise SerializationError(
            f"the job's stored arguments cannot be decoded with serializer "
            f"{assignment.serializer!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(args, tuple):  # pickle keeps the tuple the arguments were sent as
        args = list(args)
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise SerializationError(
            "the job's stored arguments are malformed: args must decode to a list and "
            f"kwargs to a dict, got {type(args).__name__} and {type(kwargs).__name__}"
        )
    return args, kwargs


def check_serializer(assignment: Assignment, declared: str) -> None:
    """Refuse a job whose serializer is not the one its task declared.

    Unpickling runs code chosen by whoever wrote the job, so a pickled job is decoded only
    for a task declared with ``@task(serializer="pickle")``: the opt-in is the task's, not
    the job's.

    Raises:
        SerializationError: the job's serializer differs from the task's.
    """
    if assignment.serializer != declared:
        raise SerializationError(
            f"refused: the job is stored with serializer {assignment.serializer!r} but task "
            f"{assignment.task_name!r} is declared with {declared!r}; nothing was decoded"
        )


def run_assignment(assignment: Assignment) -> Outcome:
    """Run one job here (in a child) and return its outcome; never raises."""
    from tasks_rq.registry import find_task

    started_at = time.time()
    try:
        found = find_task(assignment.task_name)
        check_serializer(assignment, found.job_options.serializer)
        args, kwargs = decode_arguments(assignment)
        serializer = serializers.get(assignment.serializer)
        value = found.func(*args, **kwargs)
    except BaseException as exc:  # the job fails; the child lives on, even on SystemExit
        return Outcome(assignment.job_id, False, describe_exception(exc), started_at, time.time())
    try:
        payload = serializer.dumps(value)
    except SerializationError as exc:
        reason = f"the task returned a value its serializer cannot carry: {exc}"
        return Outcome(assignment.job_id, False, reason, started_at, time.time())
    return Outcome(assignment.job_id, True, payload, started_at, time.time())


def child_main(conn: Connection, imports: list[str], worker_pid: int = 0) -> None:
    """Run jobs received on ``conn`` until the pipe closes or ``None`` arrives.

    Args:
        conn: the child's end of the pipe to the worker.
        imports: modules to import first.
        worker_pid: the worker's process id; the child exits as soon as that process is
            gone (0: do not watch).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if worker_pid:
        exit_with(worker_pid)
    for module in imports:
        __import__(module)
    own_pid = os.getpid()
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for assignment in batch:
            outcome = run_assignment(assignment)
            if os.getpid() != own_pid:
                os._exit(0)  # a copy the task forked returned here: it must not answer
            conn.send(outcome)


def exit_with(pid: int) -> None:
    """Exit this process (at once, from a watchdog thread) when process ``pid`` ends.

    A child's parent is multiprocessing's fork server, which outlives a SIGKILLed (or
    out-of-memory killed) worker: without this, a job would run on unsupervised while its
    lease expires and another worker runs it again.
    """

    def watch() -> None:
        try:
            handle = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux 5.3+: poll instead
            while is_alive(pid):
                time.sleep(WATCH_POLL_S)
        else:
            select.select([handle], [], [])
        os._exit(WORKER_GONE_EXIT_CODE)

    threading.Thread(target=watch, name="tasks-rq-watchdog", daemon=True).start()


def is_alive(pid: int) -> bool:
    """Return whether process ``pid`` exists (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Child:
    """One child process of the pool and the jobs sent to it, in the order it runs them.

    A child gets one job at a time, or a short batch of fast jobs in one message; it sends
    one outcome per job as each ends. The first job in flight is the one running: it must
    end within its timeout of the moment the previous outcome (or the batch) arrived.
    """

    process: BaseProcess
    conn: Connection
    in_flight: deque[tuple[str, float]] = field(default_factory=deque)
    deadline: float = 0.0
    started_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_idle(self) -> bool:
        """Return whether the child waits for jobs."""
        return not self.in_flight

    @property
    def job_id(self) -> str | None:
        """Return the id of the job running in the child, if any."""
        return self.in_flight[0][0] if self.in_flight else None

    def send(self, assignments: list[Assignment], timeouts_s: list[float]) -> None:
        """Give the child jobs to run in order, each within its timeout."""
        self.in_flight.extend(zip((a.job_id for a in assignments), timeouts_s, strict=True))
        self._start_head(time.monotonic())
        self.conn.send(assignments)

    def _start_head(self, now: float) -> None:
        self.started_at = now
        self.deadline = now + self.in_flight[0][1] if self.in_flight else 0.0

    def take_outcome(self) -> Outcome:
        """Read the next outcome (the running job's) and move on to the next job.

        Raises:
            EOFError: the child is gone.
        """
        outcome: Outcome = self.conn.recv()
        if self.in_flight and self.in_flight[0][0] == outcome.job_id:
            self.in_flight.popleft()
        self._start_head(time.monotonic())
        return outcome

    def kill(self) -> None:
        """Kill the child at once and reap it."""
        with contextlib.suppress(ProcessLookupError, OSError):
            if self.process.pid is not None:
                os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(timeout=5)
        self.conn.close()

    def exit_description(self) -> str:
        """Return how the child ended, for a job's failure reason."""
        code = self.process.exitcode
        if code is None:
            return "the job's process stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            if code == -signal.SIGKILL:
                return f"the job's process was killed by {name} (out of memory, or by hand)"
            return f"the job's process was killed by {name}"
        return f"the job's process exited with code {code}"


class Pool:
    """A fixed number of reusable child processes.

    Args:
        size: how many children.
        imports: modules every child imports when it starts.
    """

    def __init__(self, size: int, imports: list[str]) -> None:
        self.size = size
        self.imports = imports
        self._context = _context()
        self.children: list[Child] = [self._spawn() for _ in range(size)]

    def _spawn(self) -> Child:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=child_main,
            args=(child_end, self.imports, os.getpid()),
            daemon=True,
            name="tasks-rq-job",
        )
        process.start()
        child_end.close()
        return Child(process=process, conn=parent_end)

    def replace(self, child: Child) -> Child:
        """Kill ``child`` and put a fresh one in its place."""
        child.kill()
        fresh = self._spawn()
        self.children[self.children.index(child)] = fresh
        return fresh

    def idle(self) -> list[Child]:
        """Return the children waiting for a job."""
        return [child for child in self.children if child.is_idle]

    def busy(self) -> list[Child]:
        """Return the children running a job."""
        return [child for child in self.children if not child.is_idle]

    def close(self) -> None:
        """Stop every child: idle ones are asked, busy ones are killed."""
        for child in self.children:
            if child.is_idle:
                with contextlib.suppress(OSError, BrokenPipeError):
                    child.conn.send(None)
            else:
                child.kill()
        for child in self.children:
            child.process.join(timeout=5)
            if child.process.is_alive():
                child.kill()
