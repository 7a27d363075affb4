"""tasks_rq: typed background jobs on Redis.

Decorate a function with ``@task``; call ``.delay()``, ``.at()``, ``.after()`` or
``.repeat()`` to run it in a worker (``tasks-rq worker --with-scheduler``).
"""

from tasks_rq.connection import configure
from tasks_rq.errors import (
    ConnectionUnavailableError,
    DuplicateJobError,
    JobCanceledError,
    JobFailedError,
    JobTimeoutError,
    NoSuchJobError,
    NoSuchQueueError,
    SerializationError,
    TaskDefinitionError,
    TaskNotRegisteredError,
    TasksRQError,
)
from tasks_rq.job import Job, JobStatus, RunRecord
from tasks_rq.options import Repeat, Retry
from tasks_rq.queue import (
    CanceledJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    Queue,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from tasks_rq.scheduler import Scheduler
from tasks_rq.task import Task, task
from tasks_rq.topology import ClusterSettings, SentinelSettings
from tasks_rq.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "CanceledJobRegistry",
    "ClusterSettings",
    "ConnectionUnavailableError",
    "DuplicateJobError",
    "FailedJobRegistry",
    "FinishedJobRegistry",
    "Job",
    "JobCanceledError",
    "JobFailedError",
    "JobStatus",
    "JobTimeoutError",
    "NoSuchJobError",
    "NoSuchQueueError",
    "Queue",
    "Repeat",
    "Retry",
    "RunRecord",
    "ScheduledJobRegistry",
    "Scheduler",
    "SentinelSettings",
    "SerializationError",
    "StartedJobRegistry",
    "Task",
    "TaskDefinitionError",
    "TaskNotRegisteredError",
    "TasksRQError",
    "Worker",
    "__version__",
    "configure",
    "task",
]
