"""The @task decorator: plain calls, registration, and refusing what a worker can't import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tasks_rq import Repeat, Retry, TaskDefinitionError, task
from tasks_rq.task import REGISTRY

import jobs


def test_plain_call_runs_in_process_without_redis() -> None:
    assert jobs.add(2, 3) == 5


def test_task_is_registered_under_module_and_name() -> None:
    assert jobs.add.name == "jobs.add"
    assert REGISTRY["jobs.add"] is jobs.add


def test_configured_decorator_keeps_its_options() -> None:
    @task(queue="reports", name="tests.report", timeout=30, retry=2, description="d")
    def report(day: str) -> int:
        return len(day)

    assert report.job_options.queue == "reports"


def test_nested_function_is_refused_with_advice() -> None:
    with pytest.raises(TaskDefinitionError, match="top level of a module"):

        @task
        def inner() -> None: ...


def test_lambda_is_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="lambda"):
        task(lambda: None)


def test_explicit_name_allows_any_function() -> None:
    made = task(name="tests.custom-name")(lambda: 1)
    assert REGISTRY["tests.custom-name"] is made
    assert made() == 1


def test_function_in_a_script_main_is_refused(tmp_path) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        from tasks_rq import task
        @task
        def f() -> None: ...
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "__main__" in result.stderr and "python -m" in result.stderr


def test_options_returns_a_copy_and_leaves_the_task_alone() -> None:
    configured = jobs.add.options(queue="other", job_id="x1", timeout=5)
    assert configured.job_options.queue == "other"
    assert configured.job_options.job_id == "x1"
    assert jobs.add.job_options.queue == "default"
    assert jobs.add.job_options.job_id is None


@pytest.mark.parametrize("bad", ["", "has space", "a{b", "b}c", "tab\tname"])
def test_bad_queue_name_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="queue name"):
        jobs.add.options(queue=bad)


def test_unknown_option_value_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        jobs.add.options(timeout=-1)
    with pytest.raises(ValueError, match="on_conflict"):
        jobs.add.options(on_conflict="merge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown serializer"):
        jobs.add.options(serializer="yaml")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"times": 0}, ValueError, "times"),
        ({"times": -1}, ValueError, "times"),
        ({"times": 1.5}, TypeError, "times"),
        ({"times": True}, TypeError, "times"),
        ({"times": 2, "interval": -1}, ValueError, "interval"),
        ({"times": 2, "interval": [1, -2]}, ValueError, r"interval\[1\]"),
        ({"times": 2, "interval": "5"}, TypeError, "interval"),
        ({"times": 2, "interval": []}, ValueError, "empty"),
        ({"times": 2, "interval": float("nan")}, ValueError, "interval"),
    ],
)
def test_bad_repeat_is_refused_naming_the_argument(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        Repeat(**kwargs)


def test_bad_retry_is_refused() -> None:
    with pytest.raises(ValueError, match="max"):
        Retry(max=-1)
    with pytest.raises(ValueError, match="retry"):
        jobs.add.options(retry=-2)


def test_async_function_is_refused() -> None:
    async def coroutine_task() -> None: ...

    with pytest.raises(TaskDefinitionError, match="async def"):
        task(name="tests.async")(coroutine_task)


def test_a_taken_name_is_refused_for_another_function() -> None:
    with pytest.raises(TaskDefinitionError, match="already taken"):
        task(name="jobs.add")(lambda a, b: a - b)


def test_the_same_function_may_register_again() -> None:
    again = task(jobs.add.func)
    assert REGISTRY["jobs.add"] is again
    REGISTRY["jobs.add"] = jobs.add


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Repeat(2**63, 1), "times must be from 1"),
        (lambda: Retry(max=2**63), "max must be from 0"),
        (lambda: Repeat(1, 1e300), "at most 100 years"),
        (lambda: Repeat(1, [1, 1e12]), r"interval\[1\] must be at most 100 years"),
        (lambda: Retry(max=1, interval=1e300), "at most 100 years"),
    ],
)
def test_counts_and_intervals_too_large_to_store_are_refused(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()
