"""The shortest tour: define tasks, queue jobs, run a worker, print what happened.

Run it from the repository's root folder::

    python -m examples.quickstart

The tasks live in this module, which a worker can import as ``examples.quickstart``
(that is why it is run with ``python -m``: a task defined in a script run directly lives in
``__main__``, which no worker can import, and ``@task`` refuses it).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from tasks_rq import JobFailedError, Repeat, Worker, task


@task
def say_hello(name: str = "world") -> str:
    """Return a greeting."""
    return f"hello {name}"


@task(retry=1)
def divide(a: float, b: float) -> float:
    """Return a / b (fails when b is 0, and is retried once)."""
    return a / b


def main() -> None:
    """Queue a few jobs, run a burst worker with its scheduler, print the outcomes."""
    print("plain call:", say_hello("Ada"))

    now_job = say_hello.delay("Ada")
    later_job = say_hello.after(timedelta(seconds=1), "Grace")
    repeated = say_hello.options(repeat=Repeat(times=2, interval=0)).delay("Linus")
    failing = divide.delay(1, 0)
    print(f"queued {now_job.id}; scheduled {later_job.id} for {later_job.scheduled_for}")

    # A burst worker stops when nothing is left to run now, so let the scheduled job fall due.
    time.sleep(1.0)
    Worker(["default"]).work(burst=True, with_scheduler=True)

    print("delay  ->", now_job.result())
    print("after  ->", later_job.result(), "ran at", later_job.started_at)
    print("repeat ->", repeated.result(), f"({repeated.runs} runs)")
    try:
        failing.result()
    except JobFailedError as exc:
        print("failed ->", str(exc).splitlines()[0])


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    main()
