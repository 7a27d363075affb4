"""Find the task a stored job names: only functions decorated with ``@task`` ever run.

A worker looks the name up among the tasks its process has defined; on a miss it imports
the module the name points into (which runs its ``@task`` decorators) and looks again. A name
that still is not a task fails the job; nothing else is ever called by name.
"""

from __future__ import annotations

import importlib
from typing import Any

from tasks_rq.errors import TaskNotRegisteredError
from tasks_rq.task import REGISTRY, Task


def find_task(name: str) -> Task[Any, Any]:
    """Return the task registered as ``name``, importing its module on first use.

    Raises:
        TaskNotRegisteredError: no task has that name, even after importing its module.
    """
    found = REGISTRY.get(name)
    if found is not None:
        return found
    problems = _import_owner(name)
    found = REGISTRY.get(name)
    if found is None:
        detail = f" ({problems})" if problems else ""
        raise TaskNotRegisteredError(
            f"{name!r} is not a task{detail}: only functions decorated with @task run; "
            "check the name, or start the worker with --import MODULE"
        )
    return found


def _import_owner(name: str) -> str:
    parts = name.split(".")
    problems: list[str] = []
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            problems.append(f"importing {module} failed: {exc!r}")
            return "; ".join(problems)
        except Exception as exc:  # the module itself raised while importing
            return f"importing {module} failed: {exc!r}"
        return ""
    return f"no module of {name!r} could be imported"
