"""The ``tasks-rq`` command line: parse, call the library, print.

Shared options (``--url``, ``-v``/``-q``) are declared once on the group. Errors the user can
fix print one line and exit non-zero, without a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

import click
import redis

from tasks_rq import connection, display, inspection, server
from tasks_rq.errors import TasksRQError
from tasks_rq.job import Job
from tasks_rq.registry import find_task

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


def _connect_or_fail(start_embedded: bool = False) -> redis.Redis:
    # Only commands that put work in (worker, scheduler, enqueue) start an embedded server;
    # one that only looks must not start an empty one and report "nothing there".
    try:
        client = connection.get_client(start_embedded)  # a cluster client connects now
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
    client = _connect_or_fail(start_embedded=True)
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

    client = _connect_or_fail(start_embedded=True)
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


# --- Inspection and repair: info, jobs, purge, enqueue (parse, call inspection, print) ---


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def _queue_option(help_text: str) -> Callable[[F], F]:
    return click.option("--queue", "-Q", metavar="QUEUE", help=help_text)


def _progress(total: int, label: str) -> Any:
    return click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)


def _find_job(client: redis.Redis, job_id: str, queue: str | None) -> Job[Any]:
    if queue:
        inspection.check_queue(client, queue)
    return Job.fetch(job_id, queue, client)


@main.command()
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Refresh every SECONDS, in place, until Ctrl-C.",
)
@click.option("--count", type=click.IntRange(min=1), help="With --interval: stop after N views.")
@_json_option
@_friendly_errors
def info(interval_s: float | None, count: int | None, as_json: bool) -> None:
    """Show each queue's jobs per status and scheduler, and each worker's state."""
    if count is not None and interval_s is None:
        raise click.UsageError("--count needs --interval")
    client = _connect_or_fail()
    if interval_s is None:
        view = inspection.overview(client)
        click.echo(display.to_json(view.to_dict()) if as_json else display.render_overview(view))
        return
    with contextlib.suppress(KeyboardInterrupt):
        _watch(client, interval_s, count, as_json)


def _watch(client: redis.Redis, interval_s: float, count: int | None, as_json: bool) -> None:
    shown = 0
    while count is None or shown < count:
        if shown:
            time.sleep(interval_s)
        view = inspection.overview(client)
        if as_json:
            click.echo(display.to_json_line(view.to_dict()))
        else:
            if shown and not sys.stdout.isatty():
                click.echo()
            click.clear()
            click.echo(display.render_overview(view))
        shown += 1


@main.group(name="jobs")
def jobs_group() -> None:
    """List, show, cancel and requeue jobs."""


@jobs_group.command(name="list")
@_queue_option("Only jobs of QUEUE (default: every queue).")
@click.option("--status", "-s", type=click.Choice(inspection.STATUSES), help="Only this status.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most N jobs.",
)
@_json_option
@_friendly_errors
def jobs_list(queue: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List jobs: waiting ones next-to-run first, ended ones newest first."""
    client = _connect_or_fail()
    found = inspection.list_jobs(client, queue, status, limit)
    if as_json:
        click.echo(display.to_json([summary.to_dict() for summary in found]))
    else:
        click.echo(display.render_jobs(found))


@jobs_group.command(name="show")
@click.argument("job_id")
@_queue_option("The job's queue (default: look in every queue).")
@_json_option
@_friendly_errors
def jobs_show(job_id: str, queue: str | None, as_json: bool) -> None:
    """Show a job: its call, status, times, result or traceback, repeats and retries left."""
    client = _connect_or_fail()
    details = inspection.job_details(_find_job(client, job_id, queue))
    click.echo(display.to_json(details) if as_json else display.render_job(details))


@jobs_group.command(name="cancel")
@click.argument("job_id")
@_queue_option("The job's queue (default: look in every queue).")
@_json_option
@_friendly_errors
def jobs_cancel(job_id: str, queue: str | None, as_json: bool) -> None:
    """Cancel a waiting job; a running one finishes its run and is not repeated or retried."""
    client = _connect_or_fail()
    job = _find_job(client, job_id, queue)
    is_done = not job.status.is_final and job.cancel()
    status = job.status.value
    if as_json:
        click.echo(display.to_json({"id": job.id, "queue": job.queue, "status": status}))
    if not is_done:
        raise click.ClickException(f"job {job.id} already ended ({status}); nothing to cancel")
    if not as_json and status == "started":
        click.echo(f"job {job.id} is running: it ends as canceled, with no repeat or retry")
    elif not as_json:
        click.echo(f"canceled job {job.id} of queue {job.queue}")


@jobs_group.command(name="requeue")
@click.argument("job_id", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Requeue every failed job of --queue.")
@_queue_option("The job's queue (with --failed: required).")
@_json_option
@_friendly_errors
def jobs_requeue(job_id: str | None, all_failed: bool, queue: str | None, as_json: bool) -> None:
    """Put a failed job (or, with --failed, all of a queue's) back on its queue."""
    if bool(job_id) == all_failed:
        raise click.UsageError("give either a JOB_ID or --failed --queue QUEUE")
    if all_failed and not queue:
        raise click.UsageError("--failed needs --queue QUEUE")
    client = _connect_or_fail()
    if job_id:
        _requeue_one(client, job_id, queue, as_json)
        return
    assert queue is not None
    total = inspection.count_jobs(client, inspection.check_queue(client, queue), "failed")
    with _progress(total, f"requeueing {total} failed job(s)") as bar:
        moved = inspection.requeue_failed(client, queue, bar.update)
    if as_json:
        click.echo(display.to_json({"queue": queue, "requeued": moved}))
    else:
        click.echo(f"requeued {moved} failed job(s) on queue {queue}")


def _requeue_one(client: redis.Redis, job_id: str, queue: str | None, as_json: bool) -> None:
    job, outcome = inspection.requeue_job(client, job_id, queue)
    if as_json:
        click.echo(display.to_json({"id": job.id, "queue": job.queue, "outcome": outcome}))
    if outcome != "requeued":
        raise click.ClickException(
            f"job {job.id} is {outcome}, not failed; only failed jobs can be requeued"
        )
    if not as_json:
        click.echo(f"requeued job {job.id} on queue {job.queue}")


@main.command()
@click.argument("queue")
@click.option(
    "--status", "-s", type=click.Choice(inspection.STATUSES), required=True, help="Jobs to delete."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@_friendly_errors
def purge(queue: str, status: str, yes: bool, as_json: bool) -> None:
    """Delete every job of QUEUE in a status, with its result and history."""
    client = _connect_or_fail()
    total = inspection.count_jobs(client, inspection.check_queue(client, queue), status)
    if total and not yes:
        click.confirm(
            f"Delete {total} {status} job(s) of queue {queue}? This cannot be undone",
            abort=True,
            err=True,
        )
    deleted = 0
    if total:
        with _progress(total, f"deleting {total} {status} job(s)") as bar:
            deleted = inspection.purge(client, queue, status, bar.update)
    if as_json:
        click.echo(display.to_json({"queue": queue, "status": status, "deleted": deleted}))
    else:
        click.echo(f"deleted {deleted} {status} job(s) of queue {queue}")


def _iso_datetime(text: str | None) -> datetime | None:
    if text is None:
        return None
    cleaned = text.strip()
    try:
        return datetime.fromisoformat(cleaned[:-1] + "+00:00" if cleaned.endswith("Z") else cleaned)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date and time, e.g. 2026-10-08T09:15:00",
            param_hint="--at",
        ) from None


def _json_value(text: str | None, expected: type, what: str, example: str) -> Any:
    if text is None:
        return expected()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"not valid JSON ({exc.msg}, column {exc.colno})"
        raise click.BadParameter(detail, param_hint=what) from None
    if not isinstance(value, expected):
        detail = f"must be a JSON {expected.__name__}, e.g. {example}"
        raise click.BadParameter(detail, param_hint=what)
    return value


@main.command()
@click.argument("task_name")
@click.argument("args_json", required=False)
@click.option("--kwargs", "kwargs_json", metavar="JSON", help='Keyword arguments: {"name": 1}.')
@_queue_option("Queue the job goes to (default: the task's).")
@click.option("--at", "at_text", metavar="ISO", help="Run at this time (naive: local time).")
@click.option(
    "--after",
    "after_s",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Run SECONDS from now.",
)
@click.option(
    "--import", "imports", multiple=True, metavar="MODULE", help="Import MODULE first (repeatable)."
)
@_json_option
@_friendly_errors
def enqueue(
    task_name: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    at_text: str | None,
    after_s: float | None,
    imports: tuple[str, ...],
    as_json: bool,
) -> None:
    """Queue a job of TASK_NAME with ARGS_JSON, a JSON list of positional arguments."""
    if at_text is not None and after_s is not None:
        raise click.UsageError("give --at or --after, not both")
    at = _iso_datetime(at_text)
    args = _json_value(args_json, list, "ARGS_JSON", "'[1, \"two\"]'")
    kwargs = _json_value(kwargs_json, dict, "--kwargs", '\'{"name": "Ada"}\'')
    sys.path.insert(0, ".")
    _import_modules(imports)
    found = find_task(task_name)
    configured = found.options(queue=queue) if queue else found
    _connect_or_fail(start_embedded=True)
    if at is not None:
        job = configured.at(at, *args, **kwargs)
    elif after_s is not None:
        job = configured.after(after_s, *args, **kwargs)
    else:
        job = configured.delay(*args, **kwargs)
    _print_enqueued(job, as_json)


def _print_enqueued(job: Job[Any], as_json: bool) -> None:
    job.refresh()
    status = job.status.value
    due = job.scheduled_for if status == "scheduled" else None
    if as_json:
        click.echo(
            display.to_json({"id": job.id, "queue": job.queue, "status": status, "due": due})
        )
        return
    when = f" for {display.local_time(due)}" if due else ""
    click.echo(f"{status} job {job.id} on queue {job.queue}{when}")


@main.command(name="check")
@click.argument("queues", nargs=-1)
@click.option("--repair", is_flag=True, help="Fix what is safe to fix, and say what was done.")
@_json_option
@_friendly_errors
def check_command(queues: tuple[str, ...], repair: bool, as_json: bool) -> None:
    """Verify that every job is in exactly the place its status names (exit 1 if not)."""
    from tasks_rq import check

    client = _connect_or_fail()
    for name in queues:  # a mistyped queue must not pass as "clean"
        inspection.check_queue(client, name)
    report = check.check(client, queues=list(queues) or None, repair=repair)
    click.echo(display.to_json(report.to_dict()) if as_json else check.render(report))
    if not report.is_clean:
        sys.exit(1)


if __name__ == "__main__":
    main()
