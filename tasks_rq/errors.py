"""Exceptions raised by tasks_rq.

Every error the library raises on purpose derives from one root::

    TasksRQError
    ├── ConnectionUnavailableError   no Redis server could be reached or started
    ├── TaskNotRegisteredError       a stored job names something that is not a task
    ├── TaskDefinitionError          a function cannot become a task (lambda, nested, __main__)
    ├── SerializationError           a value cannot be carried by the job's serializer
    ├── DuplicateJobError            a job id is still pending when enqueued again
    ├── NoSuchJobError               a job id is not (or no longer) stored
    ├── NoSuchQueueError             a queue name was never used on this Redis
    ├── JobFailedError               the job ended failed; carries the remote traceback
    ├── JobCanceledError             the job was canceled before it produced a result
    └── JobTimeoutError              waiting for a job's result took longer than allowed

Misuse of an argument raises the builtin ``ValueError`` or ``TypeError`` naming it.
"""

from __future__ import annotations


class TasksRQError(Exception):
    """Root of every error tasks_rq raises on purpose."""


class ConnectionUnavailableError(TasksRQError):
    """Raised when no Redis server can be reached or started."""


class TaskNotRegisteredError(TasksRQError):
    """Raised when a stored job names a function that is not a registered task."""


class TaskDefinitionError(TasksRQError):
    """Raised when a function cannot become a task a worker could import."""


class SerializationError(TasksRQError, ValueError):
    """Raised when an argument or result cannot be carried by the serializer."""


class DuplicateJobError(TasksRQError):
    """Raised when a job id is enqueued again while the first job is still pending."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(
            f"job {job_id!r} is already {status}; pass on_conflict='keep' to get the "
            "existing job back, or wait until it ends"
        )
        self.job_id = job_id
        self.status = status


class NoSuchJobError(TasksRQError, LookupError):
    """Raised when a job id is not stored (never was, expired, or deleted)."""


class NoSuchQueueError(TasksRQError, LookupError):
    """Raised when an inspection names a queue no job was ever stored in."""


class JobFailedError(TasksRQError):
    """Raised by ``Job.result()`` when the job failed; ``remote_traceback`` says why."""

    def __init__(self, job_id: str, remote_traceback: str) -> None:
        last_line = remote_traceback.strip().splitlines()[-1] if remote_traceback else "failed"
        super().__init__(f"job {job_id} failed: {last_line}")
        self.job_id = job_id
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        first = super().__str__()
        return f"{first}\n\nRemote traceback:\n{self.remote_traceback}"


class JobCanceledError(TasksRQError):
    """Raised by ``Job.result()`` when the job was canceled."""


class JobTimeoutError(TasksRQError, TimeoutError):
    """Raised by ``Job.result(timeout=...)`` when the job did not end in time."""
