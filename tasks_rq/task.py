"""The ``@task`` decorator: a plain function that can also be run in the background.

``@task`` (or ``@task(queue=..., ...)``) returns a ``Task`` that still runs in-process when
called, and gains helpers that store a job in Redis instead: ``delay`` (now), ``at`` (a
datetime), ``after`` (a delay), ``repeat`` and ``map`` (many jobs in one round trip). Their
signatures are typed from the function, so a type checker catches a wrong argument at the
call site. Per-call options go through ``options(...)``, which returns a configured copy, so
no keyword of the function is ever taken for an option.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, overload

from typing_extensions import ParamSpec

from tasks_rq import serializers, timing
from tasks_rq.errors import SerializationError, TaskDefinitionError
from tasks_rq.job import Job
from tasks_rq.options import JobOptions, OnConflict, Repeat, Retry
from tasks_rq.queue import JobRequest, Queue

P = ParamSpec("P")
R = TypeVar("R")

REGISTRY: dict[str, Task[Any, Any]] = {}
"""Every task defined in this process, by registered name."""

MAP_CHUNK_SIZE = 1000


def task_name_of(func: Callable[..., Any]) -> str:
    """Return the stable name a worker finds ``func`` by.

    Raises:
        TaskDefinitionError: a worker could never import ``func``.
    """
    qualname = getattr(func, "__qualname__", "")
    module = getattr(func, "__module__", None)
    if not qualname or qualname == "<lambda>" or "<lambda>" in qualname:
        raise TaskDefinitionError(
            "a lambda cannot be a task: a worker finds tasks by importing them by name; "
            "define it with def at the top level of a module"
        )
    if "<locals>" in qualname:
        raise TaskDefinitionError(
            f"{qualname} is defined inside a function, so a worker cannot import it; "
            "move it to the top level of a module"
        )
    if module == "__main__":
        module = _main_module_name()
        if module is None:
            raise TaskDefinitionError(
                f"task {qualname} is defined in a script run directly (__main__), which a "
                "worker cannot import; put it in a module (e.g. tasks.py) and import it "
                "from the script, or run the script with python -m package.module"
            )
    if not module:
        raise TaskDefinitionError(f"{qualname} has no module a worker could import")
    return f"{module}.{qualname}"


def _main_module_name() -> str | None:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if not name or name == "__main__":
        return None
    return str(name).removesuffix(".__main__")


class Task(Generic[P, R]):
    """A function that runs here when called and in a worker through its helpers.

    Attributes:
        func: the wrapped function.
        name: the name a worker finds it by.
        job_options: the options its jobs get.
    """

    def __init__(self, func: Callable[P, R], name: str, job_options: JobOptions) -> None:
        self.func = func
        self.name = name
        self.job_options = job_options
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)
        self.__qualname__ = getattr(func, "__qualname__", name)
        self.__module__ = getattr(func, "__module__", __name__)
        self.__wrapped__ = func
        self._signature = inspect.signature(func)
        self._parameter_names = list(self._signature.parameters)
        self._positional_range = _plain_positional_range(self._signature)
        self._queue: Queue | None = None

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.job_options.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, as if it were not a task."""
        return self.func(*args, **kwargs)

    def options(
        self,
        *,
        queue: str | None = None,
        job_id: str | None = None,
        on_conflict: OnConflict | None = None,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta | None = None,
        failure_ttl: float | timedelta | None = None,
        description: str | None = None,
        retry: int | Retry | None = None,
        repeat: Repeat | None = None,
        serializer: str | None = None,
    ) -> Task[P, R]:
        """Return a copy of this task whose jobs get the given options.

        Args:
            queue: the queue its jobs go to.
            job_id: a custom id (unique per queue while the job is pending).
            on_conflict: "raise" (``DuplicateJobError``) or "keep" (return the pending job)
                when ``job_id`` is still pending.
            timeout: seconds (or a timedelta) a run may take before it is stopped.
            result_ttl: seconds a finished job is kept (-1: forever, 0: not at all).
            failure_ttl: seconds a failed job is kept (-1: forever).
            description: a text shown by ``tasks-rq jobs``.
            retry: retries of a failed run, as a count or a ``Retry``.
            repeat: a ``Repeat(times, interval)`` policy.
            serializer: the task's own serializer (it cannot change per call: workers decode
                a job only with the serializer its task declares).

        Raises:
            ValueError: an option has a bad value, or ``serializer`` differs from the task's.
        """
        given = {name: value for name, value in locals().items() if name != "self"}
        changes = {name: value for name, value in given.items() if value is not None}
        if (
            serializer is not None
            and serializers.get(serializer).name != self.job_options.serializer
        ):
            raise ValueError(
                f"serializer {serializer!r} differs from the one {self.name} declares "
                f"({self.job_options.serializer!r}); declare it with @task(serializer=...)"
            )
        copy: Task[P, R] = Task(self.func, self.name, self.job_options.replace(**changes))
        return copy

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Queue a job that runs the task with these arguments as soon as a worker is free."""
        return self._enqueue_one(None, args, kwargs)

    def at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Schedule a job for ``when`` (naive: local time; in the past: as soon as possible)."""
        due = timing.to_timestamp(when, argument="when")
        return self._enqueue_one(due, args, kwargs)

    def after(self, delay: timedelta | float, /, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Schedule a job ``delay`` (a timedelta or seconds) from now."""
        import time

        seconds = timing.delay_to_seconds(delay, argument="delay")
        return self._enqueue_one(time.time() + seconds, args, kwargs)

    def repeat(
        self,
        times: int,
        interval: float | timedelta | Sequence[float | timedelta] = 0,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Job[R]:
        """Queue a job now that runs again ``times`` more times after each successful run.

        Args:
            times: repetitions after the first run (``times + 1`` runs in all).
            interval: seconds between the end of one run and the start of the next, as one
                number or a list read in order (its last value is reused).
            *args: the task's positional arguments.
            **kwargs: the task's keyword arguments.
        """
        policy = Repeat(times, interval)
        return self.options(repeat=policy)._enqueue_one(None, args, kwargs)

    def map(self, *iterables: Iterable[Any]) -> list[Job[R]]:
        """Queue one job per item, like the builtin ``map``, in one round trip per chunk.

        ``task.map(["a", "b"])`` queues ``task("a")`` and ``task("b")``; with several
        iterables their items are zipped into positional arguments.
        """
        if self.job_options.job_id is not None:
            raise ValueError("map() cannot be used with a job_id: each job needs its own id")
        jobs: list[Job[R]] = []
        chunk: list[JobRequest] = []
        for call_args in zip(*iterables, strict=False):
            chunk.append(self._request(None, call_args, {}))
            if len(chunk) >= MAP_CHUNK_SIZE:
                jobs += self._store(chunk)
                chunk = []
        if chunk:
            jobs += self._store(chunk)
        return jobs

    def _enqueue_one(
        self, due: float | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Job[R]:
        return self._store([self._request(due, args, kwargs)])[0]

    def _store(self, requests: list[JobRequest]) -> list[Job[R]]:
        if self._queue is None:
            self._queue = Queue(self.job_options.queue)
        return self._queue.enqueue(requests)

    def _request(
        self, due: float | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> JobRequest:
        self._check_arguments(args, kwargs)
        serializer = serializers.get(self.job_options.serializer)
        try:
            encoded_args = serializer.dumps(args) if args else None
            encoded_kwargs = serializer.dumps(kwargs) if kwargs else None
        except SerializationError:
            detail = serializers.explain_failure(serializer, args, kwargs, self._parameter_names)
            raise SerializationError(
                f"cannot queue {self.name}: {detail}; pass plain JSON values "
                "(or use serializer='pickle' for trusted data)"
            ) from None
        return JobRequest(
            self.name, encoded_args, encoded_kwargs, self.job_options, due, self.job_options.job_id
        )

    def _check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        span = self._positional_range
        if span is not None and not kwargs and span[0] <= len(args) <= span[1]:
            return  # the common case, checked without binding
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None


def _check_name_is_free(name: str, function: Callable[..., Any]) -> None:
    """Refuse a second, different function under a name already registered.

    The same function defined again (its module reloaded or imported twice) replaces the
    first silently; anything else would make which one runs depend on import order.
    """
    existing = REGISTRY.get(name)
    if existing is None:
        return
    same = (
        getattr(existing.func, "__module__", None),
        getattr(existing.func, "__qualname__", None),
    )
    if same != (getattr(function, "__module__", None), getattr(function, "__qualname__", None)):
        raise TaskDefinitionError(
            f"task name {name!r} is already taken by {same[0]}.{same[1]}; give this one "
            "another name with @task(name=...)"
        )


def _plain_positional_range(signature: inspect.Signature) -> tuple[int, int] | None:
    """Return (required, total) positional counts if every parameter is a plain one."""
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = list(signature.parameters.values())
    if any(parameter.kind not in plain for parameter in parameters):
        return None
    required = sum(parameter.default is inspect.Parameter.empty for parameter in parameters)
    return required, len(parameters)


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    queue: str = ...,
    name: str | None = ...,
    timeout: float | timedelta = ...,
    result_ttl: float | timedelta = ...,
    failure_ttl: float | timedelta = ...,
    description: str | None = ...,
    retry: int | Retry | None = ...,
    serializer: str = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    queue: str = "default",
    name: str | None = None,
    timeout: float | timedelta | None = None,
    result_ttl: float | timedelta | None = None,
    failure_ttl: float | timedelta | None = None,
    description: str | None = None,
    retry: int | Retry | None = None,
    serializer: str = "json",
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Turn a function into a task, bare (``@task``) or configured (``@task(queue=...)``).

    Args:
        func: the function (when used bare).
        queue: the queue its jobs go to.
        name: the name workers find it by (default: ``module.qualname``).
        timeout: seconds (or a timedelta) a run may take before it is stopped (180).
        result_ttl: seconds a finished job is kept (500; -1 forever; 0 not at all).
        failure_ttl: seconds a failed job is kept (one year; -1 forever).
        description: a text shown by ``tasks-rq jobs``.
        retry: retries of a failed run, as a count or a ``Retry``.
        serializer: "json" (default) or "pickle" (trusted data only).

    Raises:
        TaskDefinitionError: the function is a lambda, nested, or in a script's __main__.
    """
    given: dict[str, Any] = {
        "queue": queue,
        "description": description,
        "retry": retry,
        "serializer": serializer,
        "timeout": timeout,
        "result_ttl": result_ttl,
        "failure_ttl": failure_ttl,
    }
    job_options = JobOptions().replace(**{k: v for k, v in given.items() if v is not None})

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        if not callable(function):
            raise TypeError(f"@task needs a function, got {function!r}")
        if inspect.iscoroutinefunction(function):
            raise TaskDefinitionError(
                f"{getattr(function, '__qualname__', function)} is an async def: tasks run as "
                "plain functions; wrap it, e.g. def f(...): return asyncio.run(g(...))"
            )
        registered = name or task_name_of(function)
        _check_name_is_free(registered, function)
        made: Task[P, R] = Task(function, registered, job_options)
        REGISTRY[registered] = made
        return made

    if func is not None:
        return decorate(func)
    return decorate
