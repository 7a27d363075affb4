"""Turn what ``tasks_rq.inspection`` reads into text for people and JSON for scripts.

The CLI prints these strings and nothing else, so the commands stay thin and what a person
reads is decided in one place. Times show in the machine's local zone for people and as ISO
8601 in UTC for scripts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from tasks_rq.inspection import STATUSES, JobSummary, Overview, WorkerInfo

MAX_VALUE_WIDTH = 60


def to_json(value: Any) -> str:
    """Return ``value`` as indented JSON; dates become ISO 8601, other odd values text."""
    return json.dumps(value, indent=2, default=_plain, ensure_ascii=False)


def to_json_line(value: Any) -> str:
    """Return ``value`` as JSON on one line (one record of a JSON Lines stream)."""
    return json.dumps(value, default=_plain, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def local_time(moment: datetime | str | None) -> str:
    """Return ``moment`` (a datetime or ISO 8601 text) in local time, to the millisecond."""
    if moment is None or moment == "":
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    shown = moment.astimezone()
    return (
        shown.strftime("%Y-%m-%d %H:%M:%S.")
        + f"{shown.microsecond // 1000:03d}"
        + (shown.strftime(" %Z") if shown.tzname() else "")
    )


def age(moment: datetime | None, now: datetime) -> str:
    """Return how long before ``now`` the moment was, e.g. ``3.2 s ago``."""
    if moment is None:
        return "-"
    seconds = (now - moment).total_seconds()
    if seconds < 120:
        return f"{max(seconds, 0):.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return ``rows`` under ``headers`` in aligned columns (numbers to the right)."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    is_number = [
        bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, is_number, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line([h.upper() for h in headers]), *(line(row) for row in cells)])


def render_overview(view: Overview) -> str:
    """Return the queues and workers of ``tasks-rq info`` as text."""
    if view.queues:
        rows = [
            [stats.name, *(stats.counts[s] for s in STATUSES), stats.scheduler or "-"]
            for stats in view.queues
        ]
        queues = table(["queue", *STATUSES, "scheduler"], rows)
    else:
        queues = "no queues yet (nothing was ever enqueued on this Redis)"
    workers = _render_workers(view.workers, view.taken_at) if view.workers else "no workers"
    stamp = local_time(view.taken_at)
    return f"{stamp}\n\n{queues}\n\n{workers}"


def _render_workers(workers: Sequence[WorkerInfo], now: datetime) -> str:
    rows = [
        [
            worker.name,
            worker.state,
            ",".join(worker.queues) or "-",
            ",".join(worker.jobs) or "-",
            age(worker.heartbeat, now),
            worker.pid or "-",
            worker.host or "-",
        ]
        for worker in workers
    ]
    return table(["worker", "state", "queues", "jobs", "heartbeat", "pid", "host"], rows)


def render_jobs(summaries: Sequence[JobSummary]) -> str:
    """Return the lines of ``tasks-rq jobs list`` as text."""
    if not summaries:
        return "no jobs"
    rows = [
        [s.id, s.queue, s.status, s.task_name, local_time(s.when), _shorten(s.description or "")]
        for s in summaries
    ]
    return table(["id", "queue", "status", "task", "when", "description"], rows)


def _shorten(text: str, width: int = MAX_VALUE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def call_text(task_name: str, args: Any, kwargs: Any) -> str:
    """Return the call a job makes, e.g. ``jobs.add(2, b=3)``."""
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return f"{task_name}(<undecodable: {args!r}, {kwargs!r}>)"
    parts = [to_json_line(value) for value in args]
    parts += [f"{name}={to_json_line(value)}" for name, value in kwargs.items()]
    return f"{task_name}({', '.join(parts)})"


def render_job(details: Mapping[str, Any]) -> str:
    """Return what ``tasks-rq jobs show`` prints for one job (see ``job_details``)."""
    lines = [f"job {details['id']} (queue {details['queue']})"]
    for label, value in _job_rows(details):
        lines.append(f"  {label:<14}{value}")
    if details.get("error"):
        heading = "traceback" if details["status"] == "failed" else "last error"
        lines += ["", f"{heading}:", *("  " + line for line in details["error"].splitlines())]
    if details.get("history"):
        lines += ["", "latest runs (newest first):", *map(_history_line, details["history"])]
    return "\n".join(lines)


def _job_rows(details: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("status", details["status"]),
        ("call", call_text(details["task"], details["args"], details["kwargs"])),
    ]
    if details.get("description"):
        rows.append(("description", details["description"]))
    for label, name in (
        ("created", "created_at"),
        ("enqueued", "enqueued_at"),
        ("due", "due"),
        ("started", "started_at"),
        ("ended", "ended_at"),
    ):
        if details.get(name):
            rows.append((label, local_time(details[name])))
    if details.get("worker"):
        rows.append(("worker", details["worker"]))
    rows += _counter_rows(details)
    if "result" in details:
        rows.append(("result", _shorten(to_json_line(details["result"]), 200)))
    return rows


def _counter_rows(details: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [("runs", str(details["runs"]))]
    if details["repeat_intervals"]:
        gaps = ", ".join(f"{gap:g}" for gap in details["repeat_intervals"])
        rows.append(("repeats left", f"{details['repeats_left']} (intervals {gaps} s)"))
    if details["retries"]:
        rows.append(("retries left", f"{details['retries_left']} of {details['retries']}"))
    if details["requeues"]:
        rows.append(("requeued", f"{details['requeues']} time(s) by hand"))
    return rows


def _history_line(run: Mapping[str, Any]) -> str:
    started = local_time(run.get("started_at"))
    if run.get("outcome") == "ok":
        detail = "result " + _shorten(to_json_line(run.get("result")))
    else:
        last = (run.get("error") or "").strip().splitlines()
        detail = "error " + _shorten(last[-1] if last else "")
    return f"  {run.get('outcome', '?'):<5}{started}  {detail}"
