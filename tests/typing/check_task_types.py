"""The types mypy must infer for tasks and jobs; checked by ``mypy --strict``, never run.

Each ``assert_type`` fails the check if a change loses or widens a type. Each line marked
``# type: ignore[code]`` must be an error of that code: under ``--strict``,
``warn_unused_ignores`` reports the mark as unused the day the error goes away.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from typing_extensions import assert_type

from tasks_rq import Job, Repeat, Retry, Task, task


@task
def add(a: int, b: int, /) -> int:
    return a + b


@task(queue="reports", timeout=timedelta(minutes=5), retry=Retry(max=3, interval=[1, 5]))
def build_report(day: str, /) -> list[str]:
    return [day]


@task(retry=2)
def greet(name: str = "world", *, shout: bool = False) -> str:
    return name.upper() if shout else name


@task
def nothing() -> None:
    return None


# The decorator keeps the function's parameters and return type, bare or configured.
assert_type(add, Task[[int, int], int])
assert_type(build_report, Task[[str], list[str]])
assert_type(nothing, Task[[], None])
assert_type(add(1, 2), int)
assert_type(greet("Ada", shout=True), str)

# Every helper returns a job typed by the task's return type.
assert_type(add.delay(1, 2), Job[int])
assert_type(build_report.delay("2026-10-08"), Job[list[str]])
assert_type(nothing.delay(), Job[None])
assert_type(greet.delay(shout=True), Job[str])
assert_type(add.at(datetime(2030, 1, 1, 9, 15), 1, 2), Job[int])
assert_type(add.after(timedelta(seconds=10), 1, 2), Job[int])
assert_type(add.after(2.5, 1, 2), Job[int])
assert_type(add.repeat(3, [5, 10], 1, 2), Job[int])
assert_type(add.repeat(1, 0, 1, 2), Job[int])
assert_type(add.repeat(2, timedelta(seconds=5), 1, 2), Job[int])
assert_type(add.repeat(2, [timedelta(seconds=5), 10], 1, 2), Job[int])
assert_type(add.map([1, 2], [3, 4]), list[Job[int]])

# options(...) returns a task of the same type, so its helpers stay checked.
assert_type(add.options(queue="fast"), Task[[int, int], int])
configured = build_report.options(job_id="daily", on_conflict="keep", repeat=Repeat(3, 30))
assert_type(configured, Task[[str], list[str]])
assert_type(configured.after(timedelta(hours=1), "2026-10-08"), Job[list[str]])

# A job's result has the task's return type.
job = add.delay(1, 2)
assert_type(job.result(), int)
assert_type(job.result(timeout=30), int)
assert_type(job.return_value, int | None)
assert_type(build_report.delay("d").result(), list[str])
assert_type(Job.fetch("some-id"), Job[Any])

# Wrong arguments are type errors at the call site.
add.delay(1)  # type: ignore[call-arg]
add.delay(1, "2")  # type: ignore[arg-type]
add.delay(1, 2, 3)  # type: ignore[call-arg]
add.delay(1, 2, queue="fast")  # type: ignore[call-arg]
greet.delay(shout="yes")  # type: ignore[arg-type]
greet.delay(loud=True)  # type: ignore[call-arg]
add.at("2030-01-01T09:15", 1, 2)  # type: ignore[arg-type]
add.at(datetime(2030, 1, 1), 1, "2")  # type: ignore[arg-type]
add.after("10s", 1, 2)  # type: ignore[arg-type]
add.after(timedelta(seconds=10), 1)  # type: ignore[call-arg]
add.repeat("3", 0, 1, 2)  # type: ignore[arg-type]
add.repeat(3, "5", 1, 2)  # type: ignore[arg-type]
add.repeat(3, 0, 1, "2")  # type: ignore[arg-type]
add.options(queue=1)  # type: ignore[arg-type]
add.options(bogus=True)  # type: ignore[call-arg]
add.options(on_conflict="replace")  # type: ignore[arg-type]
add.options(repeat=3)  # type: ignore[arg-type]
add.options(queue="fast").delay("1", 2)  # type: ignore[arg-type]
text: str = add.delay(1, 2).result()  # type: ignore[assignment]

task(queue=1)  # type: ignore[call-overload]
task(retry="3")  # type: ignore[call-overload]
