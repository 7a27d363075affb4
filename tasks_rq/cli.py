"""The ``tasks-rq`` command line: parse, call the library, print.

Shared options (``--url``, ``-v``/``-q``) are declared once on the group. Errors the user can
fix print one line and exit non-zero, without a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
import redis

from tasks_rq import connection, server
from tasks_rq.errors import TasksRQError

F = TypeVar("F", bound=Callable[..., Any])


def _friendly_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (TasksRQError, ValueError, TypeError) as exc:
            raise click.ClickException(str(exc).splitlines()[0]) from None
        except redis.ConnectionError as exc:
            raise click.ClickException(str(connection.unavailable(exc))) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("tasks_rq").setLevel(level)


@click.group()
@click.option("--url", envvar="TASKS_RQ_URL", help="Redis URL (default: embedded server).")
@click.option("-v", "--verbose", count=True, help="Log more (DEBUG).")
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors.")
@click.version_option(package_name="tasks_rq")
def main(url: str | None, verbose: int, quiet: bool) -> None:
    """Typed background jobs on Redis."""
    _setup_logging(verbose, quiet)
    if url:
        connection.configure(url=url)


def _import_modules(modules: tuple[str, ...]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise click.ClickException(
                f"--import {module}: no module named {exc.name!r} "
                "(is it installed, or is the current folder on PYTHONPATH?)"
            ) from None
        except Exception as exc:
            raise click.ClickException(f"--import {module}: importing it raised {exc!r}") from None


def _connect_or_fail() -> redis.Redis:
    client = connection.get_client()
    try:
        connection.check_version(client)
    except redis.ConnectionError as exc:
        raise connection.unavailable(exc) from None
    return client


@main.command()
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop once no job is left.")
@click.option("--with-scheduler", is_flag=True, help="Also run the scheduler (child process).")
@click.option("--name", help="Worker name (default: host.pid.random).")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Jobs run at once, each in its own child process.",
)
@click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Import MODULE first (repeatable), so its tasks are known.",
)
@click.option(
    "--lease",
    "lease_s",
    type=click.FloatRange(min=1),
    default=15.0,
    show_default=True,
    help="Seconds a job stays leased without renewal.",
)
@click.option(
    "--shutdown-timeout",
    "shutdown_timeout_s",
    type=click.FloatRange(min=0),
    help="After SIGTERM, seconds running jobs may take before being put back.",
)
@_friendly_errors
def worker(
    queues: tuple[str, ...],
    burst: bool,
    with_scheduler: bool,
    name: str | None,
    concurrency: int,
    imports: tuple[str, ...],
    lease_s: float,
    shutdown_timeout_s: float | None,
) -> None:
    """Run jobs from QUEUES (default: default), the first queue served first."""
    from tasks_rq.worker import Worker

    sys.path.insert(0, ".")
    _import_modules(imports)
    client = _connect_or_fail()
    runner = Worker(
        list(queues) or ["default"],
        name=name,
        concurrency=concurrency,
        imports=list(imports),
        lease_s=lease_s,
        shutdown_timeout_s=shutdown_timeout_s,
        connection=client,
    )
    runner.work(burst=burst, with_scheduler=with_scheduler)


@main.command()
@click.argument("queues", nargs=-1)
@_friendly_errors
def scheduler(queues: tuple[str, ...]) -> None:
    """Run a scheduler for QUEUES (default: default) until SIGTERM or Ctrl-C."""
    import signal

    from tasks_rq.scheduler import Scheduler

    client = _connect_or_fail()
    stopping: list[bool] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    Scheduler(list(queues) or ["default"], client).run(lambda: bool(stopping))


@main.group(name="server")
def server_group() -> None:
    """See or stop the embedded Redis server of this folder."""


@server_group.command(name="status")
def server_status() -> None:
    """Say whether the embedded server of this folder runs, and where."""
    found = server.running(server.state_folder())
    if found is None:
        click.echo("no embedded server runs for this folder")
        sys.exit(1)
    click.echo(f"embedded server pid {found.pid} at {found.url} (data in {found.folder})")


@server_group.command(name="stop")
def server_stop() -> None:
    """Stop the embedded server of this folder (its data stays for the next start)."""
    if server.stop():
        click.echo("stopped the embedded server")
    else:
        click.echo("no embedded server runs for this folder")


if __name__ == "__main__":
    main()
