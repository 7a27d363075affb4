"""Turn the outcomes of finished runs into calls of the finish script, and log them.

For each outcome the worker decides what comes next (the next repetition, a retry, or the
end with its TTL), and the finish script records it atomically; the outcomes of one queue
go in one script call, so a batch of fast jobs costs one round trip.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tasks_rq import keys
from tasks_rq.claimed import ClaimedJob
from tasks_rq.options import DEFAULT_FAILURE_TTL_S, DEFAULT_RESULT_TTL_S, Retry, gap_for
from tasks_rq.pool import Outcome
from tasks_rq.scripts import Scripts

logger = logging.getLogger(__name__)

HISTORY_LENGTH = 10
MAX_ERROR_IN_HISTORY = 2000


def finish_calls(
    scripts: Scripts, lease_holder: str, outcomes: list[tuple[ClaimedJob, Outcome]]
) -> list[tuple[Any, list[int]]]:
    """Return one finish script call per queue, with the outcome indexes each covers."""
    by_queue: dict[str, list[int]] = {}
    for index, (job, _) in enumerate(outcomes):
        by_queue.setdefault(job.queue, []).append(index)
    groups = []
    for queue, indexes in by_queue.items():
        names = keys.for_queue(queue)
        call_keys = [
            names.started,
            names.queue,
            names.scheduled,
            names.finished,
            names.failed,
            names.canceled,
        ]
        args: list[Any] = [
            lease_holder,
            keys.wake_channel(queue),
            HISTORY_LENGTH,
            keys.done_channel(queue, ""),
            len(indexes),
        ]
        for index in indexes:
            job, outcome = outcomes[index]
            call_keys += [names.job(job.job_id), names.history(job.job_id)]
            try:
                args += finish_args(job, outcome)
            except Exception as exc:  # stored data no policy can read: end the job here
                logger.error(
                    "job %s: its repeat or retry policy is unreadable (%r)", job.job_id, exc
                )
                args += [
                    job.job_id,
                    job.claims,
                    outcome.ended_at,
                    "fail",
                    f"the job's stored policy is unreadable: {exc!r}",
                    "",
                    DEFAULT_FAILURE_TTL_S,
                    "",
                ]
        groups.append(((scripts.finish, call_keys, args), indexes))
    return groups


def finish_args(job: ClaimedJob, outcome: Outcome) -> list[Any]:
    """Return the finish script's per-job arguments for one outcome."""
    fields = job.fields
    next_due, ttl = "", DEFAULT_FAILURE_TTL_S  # a malformed job: no retry, no repeat
    if not job.problem:
        next_due, ttl = next_run(fields, outcome)
    record = ""
    if "repeat" in fields or "retry" in fields:
        detail = outcome.payload if outcome.is_success else outcome.payload[-MAX_ERROR_IN_HISTORY:]
        record = json.dumps(
            {
                "outcome": "ok" if outcome.is_success else "fail",
                "started_at": outcome.started_at,
                "ended_at": outcome.ended_at,
                "result" if outcome.is_success else "error": detail,
            }
        )
    status = "ok" if outcome.is_success else "fail"
    return [
        job.job_id,
        job.claims,
        outcome.ended_at,
        status,
        outcome.payload,
        next_due,
        ttl,
        record,
    ]


def next_run(fields: dict[str, str], outcome: Outcome) -> tuple[str, int]:
    """Return the due time of the next run ("" for none) and the TTL if the job ends."""
    if outcome.is_success:
        ttl = int(fields.get("result_ttl") or DEFAULT_RESULT_TTL_S)
        left = int(fields.get("repeats_left") or 0)
        if left <= 0:
            return "", ttl
        spec = json.loads(fields["repeat"])
        gap = gap_for(spec["interval"], int(spec["times"]) - left + 1)
        return repr(outcome.ended_at + gap), ttl
    ttl = int(fields.get("failure_ttl") or DEFAULT_FAILURE_TTL_S)
    left = int(fields.get("retries_left") or 0)
    if left <= 0:
        return "", ttl
    number = int(fields.get("retries") or left) - left + 1
    return repr(outcome.ended_at + Retry.gap_from_json(fields["retry"], number)), ttl


def log_outcome(job: ClaimedJob, outcome: Outcome, result: Any) -> None:
    """Log one line for a recorded outcome (INFO), or why it was not recorded."""
    took_ms = (outcome.ended_at - outcome.started_at) * 1000
    task_name = job.fields.get("task")
    if isinstance(result, Exception):
        logger.error("job %s: could not record its outcome: %s", job.job_id, result)
    elif result == "stale":
        logger.warning(
            "job %s: lease lost while running (recovered elsewhere); outcome dropped", job.job_id
        )
    elif outcome.is_success:
        logger.info("job %s: %s finished in %.1f ms (%s)", job.job_id, task_name, took_ms, result)
    else:
        last = outcome.payload.strip().splitlines()[-1] if outcome.payload.strip() else ""
        logger.info(
            "job %s: %s failed in %.1f ms (%s): %s", job.job_id, task_name, took_ms, result, last
        )
