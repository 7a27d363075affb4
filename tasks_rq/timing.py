"""Turn the times users pass (datetimes, timedeltas, seconds) into epoch seconds.

Naive datetimes are the local wall-clock time of the process that schedules the job (its
``TZ``), resolved for the date they name, so DST is honoured (January and July differ by the
zone's offset change). The rule for the two hours a year that are not one instant each
follows PEP 495, as ``datetime.timestamp()`` does:

- spring gap (a wall time that never happens, e.g. 02:30 when clocks jump 02:00 -> 03:00):
  read with the offset in force before the gap, so it runs at 03:30 new time; with
  ``fold=1``, with the offset after the gap, so it runs at 01:30 old time, one real hour
  earlier.
- autumn fold (a wall time that happens twice, e.g. 02:30 when clocks go 03:00 -> 02:00):
  the first occurrence; ``fold=1`` picks the second, one real hour later.

Aware datetimes keep their instant, whatever the zone of the process.
"""

from __future__ import annotations

import datetime as dt
import math
import time

MAX_AHEAD_S = 100 * 365.25 * 86400
"""How far ahead a job may be scheduled (about 100 years)."""


def to_timestamp(when: object, *, argument: str = "when") -> float:
    """Return the epoch seconds of ``when``.

    Args:
        when: a ``datetime``; naive means local time, aware keeps its instant.
        argument: the name to use in error messages.

    Raises:
        TypeError: ``when`` is not a datetime.
        ValueError: its tzinfo gives no offset, or it is out of range.
    """
    if not isinstance(when, dt.datetime):
        hint = ""
        if isinstance(when, (int, float)):
            hint = (
                "; for epoch seconds pass datetime.fromtimestamp(value, timezone.utc), "
                "for a delay use .after(seconds)"
            )
        elif isinstance(when, str):
            hint = "; parse it first, e.g. datetime.fromisoformat(text)"
        elif isinstance(when, dt.date):
            hint = "; combine it with a time, e.g. datetime.combine(day, time(9, 0))"
        raise TypeError(f"{argument} must be a datetime, got {type(when).__name__}: {when!r}{hint}")
    if when.tzinfo is not None and when.utcoffset() is None:
        raise ValueError(
            f"{argument} has a tzinfo ({when.tzinfo!r}) whose utcoffset() is None; "
            "pass a naive datetime for local time or one with a real time zone"
        )
    try:
        stamp = when.timestamp()
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{argument} {when!r} is out of range: {exc}") from None
    return _check_range(stamp, argument, repr(when))


def delay_to_seconds(delay: object, *, argument: str = "delay") -> float:
    """Return ``delay`` (a ``timedelta`` or a number of seconds) as seconds.

    Raises:
        TypeError: ``delay`` is neither a timedelta nor a number.
        ValueError: it is negative, not finite, or too large.
    """
    if isinstance(delay, dt.timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise TypeError(
            f"{argument} must be a timedelta or a number of seconds, "
            f"got {type(delay).__name__}: {delay!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{argument} must be a finite number of seconds >= 0, got {delay!r}")
    if seconds > MAX_AHEAD_S:
        raise ValueError(f"{argument} {delay!r} is more than 100 years ahead")
    return seconds


def _check_range(stamp: float, argument: str, shown: str) -> float:
    if stamp - time.time() > MAX_AHEAD_S:
        raise ValueError(f"{argument} {shown} is more than 100 years ahead")
    return stamp


def from_timestamp(value: str | float | None) -> dt.datetime | None:
    """Return epoch seconds as an aware UTC datetime (``None`` stays ``None``)."""
    if value is None or value == "":
        return None
    return dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
