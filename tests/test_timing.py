"""Pure time conversions: local wall time and DST, bad times, and the gaps between runs."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from functools import cache

import pytest

from tasks_rq import Repeat, Retry
from tasks_rq.options import MAX_GAP_S, gap_for
from tasks_rq.timing import delay_to_seconds, from_timestamp, to_timestamp

UTC = dt.timezone.utc

# Wall times (naive) and the UTC instant each must mean, per zone. 2030 is in the future,
# with the same rules as today: Berlin +01:00 in winter, +02:00 in summer; New York -05:00
# in winter, -04:00 in summer.
CASES: dict[str, list[tuple[str, int, str]]] = {
    "Europe/Berlin": [
        ("2030-01-15T09:00:00", 0, "2030-01-15T08:00:00"),
        ("2030-07-15T09:00:00", 0, "2030-07-15T07:00:00"),
        # spring gap (02:00 -> 03:00 on 2030-03-31): offset before the gap, then after it
        ("2030-03-31T02:30:00", 0, "2030-03-31T01:30:00"),
        ("2030-03-31T02:30:00", 1, "2030-03-31T00:30:00"),
        # autumn fold (03:00 -> 02:00 on 2030-10-27): first occurrence, then the second
        ("2030-10-27T02:30:00", 0, "2030-10-27T00:30:00"),
        ("2030-10-27T02:30:00", 1, "2030-10-27T01:30:00"),
    ],
    "America/New_York": [
        ("2030-01-15T09:00:00", 0, "2030-01-15T14:00:00"),
        ("2030-07-15T09:00:00", 0, "2030-07-15T13:00:00"),
        ("2030-03-10T02:30:00", 0, "2030-03-10T07:30:00"),
        ("2030-03-10T02:30:00", 1, "2030-03-10T06:30:00"),
        ("2030-11-03T01:30:00", 0, "2030-11-03T05:30:00"),
        ("2030-11-03T01:30:00", 1, "2030-11-03T06:30:00"),
    ],
}

CONVERT = """
import datetime as dt, json, sys
from tasks_rq.timing import to_timestamp
cases = json.loads(sys.argv[1])
print(json.dumps([to_timestamp(dt.datetime.fromisoformat(w).replace(fold=f)) for w, f in cases]))
"""


@cache
def converted_in(zone: str) -> tuple[float, ...]:
    """Return to_timestamp() of the zone's wall times, computed in a process with TZ=zone."""
    wall_times = [[wall, fold] for wall, fold, _ in CASES[zone]]
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, json.dumps(wall_times)],
        env={**os.environ, "TZ": zone},
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(json.loads(done.stdout))


def expected(utc_text: str) -> float:
    return dt.datetime.fromisoformat(utc_text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("zone", sorted(CASES))
def test_naive_winter_and_summer_times_use_the_offset_of_their_date(zone: str) -> None:
    got = converted_in(zone)
    assert got[0] == expected(CASES[zone][0][2])
    assert got[1] == expected(CASES[zone][1][2])


@pytest.mark.parametrize("zone", sorted(CASES))
def test_time_in_the_spring_gap_reads_with_the_offset_before_it_unless_fold_is_set(
    zone: str,
) -> None:
    got = converted_in(zone)
    assert got[2] == expected(CASES[zone][2][2])
    assert got[3] == expected(CASES[zone][3][2])


@pytest.mark.parametrize("zone", sorted(CASES))
def test_time_in_the_autumn_fold_means_its_first_occurrence_unless_fold_is_set(
    zone: str,
) -> None:
    got = converted_in(zone)
    assert got[4] == expected(CASES[zone][4][2])
    assert got[5] - got[4] == 3600


def test_aware_datetime_keeps_its_instant() -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    when = dt.datetime(2030, 1, 15, 17, 0, 0, 123456, tzinfo=shanghai)
    assert to_timestamp(when) == dt.datetime(2030, 1, 15, 9, 0, 0, 123456, UTC).timestamp()


def test_sub_second_precision_survives_the_round_trip() -> None:
    when = dt.datetime(2030, 1, 15, 9, 0, 0, 654321, tzinfo=UTC)
    back = from_timestamp(repr(to_timestamp(when)))
    assert back is not None
    assert abs(back - when) <= dt.timedelta(microseconds=1)


def test_delay_accepts_timedelta_and_seconds() -> None:
    assert delay_to_seconds(dt.timedelta(milliseconds=250)) == 0.25
    assert delay_to_seconds(3) == 3.0
    assert delay_to_seconds(0) == 0.0


class NoOffset(dt.tzinfo):
    """A tzinfo that knows no offset (legal, and useless for scheduling)."""

    def utcoffset(self, when: dt.datetime | None) -> None:
        return None


@pytest.mark.parametrize(
    ("when", "error", "match"),
    [
        ("tomorrow", TypeError, r"when must be a datetime.*fromisoformat"),
        (None, TypeError, "when must be a datetime, got NoneType"),
        (1700000000, TypeError, r"when must be a datetime.*fromtimestamp.*\.after"),
        (dt.date(2030, 1, 1), TypeError, r"when.*datetime\.combine"),
        (dt.datetime(2030, 1, 1, tzinfo=NoOffset()), ValueError, "when has a tzinfo.*None"),
        (dt.datetime.max, ValueError, "when .*(100 years|out of range)"),
        (dt.datetime.max.replace(tzinfo=UTC), ValueError, "when .*100 years ahead"),
    ],
)
def test_bad_time_is_refused_naming_the_argument(when: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        to_timestamp(when)


@pytest.mark.parametrize(
    ("delay", "error"),
    [
        (-5, ValueError),
        (dt.timedelta(seconds=-1), ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (dt.timedelta.max, ValueError),
        (True, TypeError),
        ("5", TypeError),
        (None, TypeError),
    ],
)
def test_bad_delay_is_refused_naming_the_argument(delay: object, error: type) -> None:
    with pytest.raises(error, match=r"^delay"):
        delay_to_seconds(delay)


def test_repeat_gaps_follow_the_list_in_order_then_reuse_its_last_value() -> None:
    assert Repeat(times=5, interval=[5, 10, 15]).gaps() == [5, 10, 15, 15, 15]


def test_repeat_single_interval_is_the_same_gap_every_time() -> None:
    assert Repeat(times=3, interval=2.5).gaps() == [2.5, 2.5, 2.5]


def test_repeat_interval_may_be_timedeltas() -> None:
    policy = Repeat(times=2, interval=[dt.timedelta(seconds=1), dt.timedelta(minutes=1)])
    assert policy.gaps() == [1.0, 60.0]


def test_gap_for_is_one_based() -> None:
    assert [gap_for([1, 2], number) for number in (1, 2, 3)] == [1.0, 2.0, 2.0]


def test_retry_gap_applies_backoff_to_a_single_interval() -> None:
    spec = Retry(max=4, interval=2, backoff=3).to_json()
    assert [Retry.gap_from_json(spec, n) for n in (1, 2, 3)] == [2.0, 6.0, 18.0]


def test_retry_gap_is_capped_by_max_interval() -> None:
    spec = Retry(max=4, interval=2, backoff=10, max_interval=dt.timedelta(seconds=50)).to_json()
    assert [Retry.gap_from_json(spec, n) for n in (1, 2, 3)] == [2.0, 20.0, 50.0]


def test_retry_gap_list_is_read_in_order_without_backoff() -> None:
    spec = Retry(max=4, interval=[1, 5], backoff=3).to_json()
    assert [Retry.gap_from_json(spec, n) for n in (1, 2, 3)] == [1.0, 5.0, 5.0]


def test_retry_jitter_stays_between_half_the_gap_and_the_gap() -> None:
    spec = Retry(max=1, interval=10, jitter=True).to_json()
    gaps = [Retry.gap_from_json(spec, 1) for _ in range(200)]
    assert all(5.0 <= gap <= 10.0 for gap in gaps)
    assert len(set(gaps)) > 1


def test_retry_gap_never_overflows_with_a_huge_backoff() -> None:
    spec = Retry(max=5000, interval=1, backoff=10).to_json()
    gap = Retry.gap_from_json(spec, 4000)
    assert math.isfinite(gap) and gap == MAX_GAP_S
