"""One parser of CronJob schedules: what Kubernetes accepts, minus what can never back up."""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubext import cron

AFTER = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)  # a Tuesday
SINCE = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        pytest.param("@yearly", "2027-01-01T00:00", id="yearly"),
        pytest.param("@annually", "2027-01-01T00:00", id="annually"),
        pytest.param("@monthly", "2026-04-01T00:00", id="monthly"),
        pytest.param("@weekly", "2026-03-15T00:00", id="weekly-sunday"),
        pytest.param("@daily", "2026-03-11T00:00", id="daily"),
        pytest.param("@midnight", "2026-03-11T00:00", id="midnight"),
        pytest.param("@hourly", "2026-03-10T13:00", id="hourly"),
        pytest.param("0 2 * * *", "2026-03-11T02:00", id="cron"),
        pytest.param("*/15 * * * *", "2026-03-10T12:15", id="step"),
        pytest.param("0 0 1,15 * *", "2026-03-15T00:00", id="list"),
        pytest.param("30 1 * * mon-fri", "2026-03-11T01:30", id="day-names"),
        pytest.param("0 0 * JAN,Apr *", "2026-04-01T00:00", id="month-names-any-case"),
        pytest.param("0 0 ? * 0", "2026-03-15T00:00", id="question-mark-sunday-0"),
        pytest.param("5/20 * * * *", "2026-03-10T12:05", id="start-with-step"),
        pytest.param("0 0 29 2 *", "2028-02-29T00:00", id="leap-day"),
        pytest.param("0 0 31 2 1", "2027-02-01T00:00", id="dom-or-dow-like-cron"),
        pytest.param(" 0  2 * * *\t", "2026-03-11T02:00", id="spaces-around-fields"),
        pytest.param("@every 1h30m", "2026-03-10T13:30", id="every-counts-from-since"),
        pytest.param("@every 1.5h", "2026-03-10T13:30", id="every-fraction"),
        pytest.param("@every 90m", "2026-03-10T13:30", id="every-minutes"),
        pytest.param("@every 5400000ms", "2026-03-10T13:30", id="every-milliseconds"),
    ],
)
def test_next_run(schedule: str, expected: str) -> None:
    assert cron.schedule_problem(schedule) is None
    assert cron.next_run(schedule, AFTER, since=SINCE) == _at(expected)


def test_runs_follow_each_other() -> None:
    runs = list(itertools.islice(cron.runs("0 */6 * * *", AFTER), 3))
    assert runs == [_at("2026-03-10T18:00"), _at("2026-03-11T00:00"), _at("2026-03-11T06:00")]


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param("1.5h", 5400, id="fraction"),
        pytest.param(".5h", 1800, id="leading-point"),
        pytest.param("2.m", 120, id="trailing-point"),
        pytest.param("1h0.5m1s", 3631, id="three-parts"),
        pytest.param("250ms", 0.25, id="milliseconds"),
        pytest.param("10us", 1e-5, id="us"),
        pytest.param("10µs", 1e-5, id="micro-sign"),
        pytest.param("10μs", 1e-5, id="greek-mu"),
        pytest.param("7ns", 7e-9, id="ns"),
        pytest.param("+1h", 3600, id="plus-sign"),
        pytest.param("2562047h", 2562047 * 3600, id="longest-go-duration-in-hours"),
    ],
)
def test_every_seconds_reads_go_durations(duration: str, seconds: float) -> None:
    assert cron.every_seconds(f"@every {duration}") == pytest.approx(seconds)
    assert cron.schedule_problem(f"@every {duration}") is None


@pytest.mark.parametrize("schedule", ["@daily", "0 2 * * *"])
def test_every_seconds_is_none_for_other_schedules(schedule: str) -> None:
    assert cron.every_seconds(schedule) is None


def test_every_runs_in_whole_seconds_like_the_cronjob_controller() -> None:
    # robfig/cron rounds an @every delay down to whole seconds, and up to at least one.
    assert cron.next_run("@every 250ms", AFTER) == AFTER + dt.timedelta(seconds=1)
    assert cron.next_run("@every 2.7s", AFTER) == AFTER + dt.timedelta(seconds=2)


def test_every_counts_from_a_since_in_the_future() -> None:
    later = AFTER + dt.timedelta(hours=5)
    assert cron.next_run("@every 1h", AFTER, since=later) == later + dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        pytest.param("@every 0s", "longer than zero", id="zero"),
        pytest.param("@every 0", "longer than zero", id="go-zero-without-unit"),
        pytest.param("@every 0h0m0.0s", "longer than zero", id="compound-zero"),
        pytest.param("@every 0.5ns", "longer than zero", id="below-a-nanosecond"),
        pytest.param("@every -1h", "longer than zero", id="negative"),
        pytest.param("@every 2562048h", "longest", id="beyond-go-duration"),
        pytest.param("@every 1x", "Go duration", id="unknown-unit"),
        pytest.param("@every 1", "Go duration", id="missing-unit"),
        pytest.param("@every 1h 30m", "Go duration", id="space-inside"),
        pytest.param("@every  1h", "Go duration", id="two-spaces"),
        pytest.param("@every 1h ", "Go duration", id="trailing-space"),
        pytest.param("@every .h", "Go duration", id="no-digits"),
        pytest.param("@every ", "Go duration", id="empty"),
        pytest.param("@every", "Go duration", id="no-duration"),
        pytest.param("@reboot", "unsupported descriptor", id="reboot"),
        pytest.param("@dailyx", "unsupported descriptor", id="dailyx"),
        pytest.param(" @daily", "five fields", id="descriptor-after-space"),
        pytest.param("", "five fields", id="empty-string"),
        pytest.param("soon", "five fields", id="word"),
        pytest.param("0 0 2 * * *", "five fields", id="six-fields-seconds"),
        pytest.param("* * * *", "five fields", id="four-fields"),
        pytest.param("60 * * * *", "minute field '60': 60 is above the maximum 59", id="minute"),
        pytest.param("0 24 * * *", "hour field '24': 24 is above the maximum 23", id="hour"),
        pytest.param("0 0 0 * *", "day-of-month field '0': 0 is below the minimum 1", id="dom"),
        pytest.param("0 0 * 13 *", "month field '13': 13 is above the maximum 12", id="month"),
        pytest.param("0 0 * * 7", "day-of-week field '7': 7 is above the maximum 6", id="dow-7"),
        pytest.param("0 0 * * 1-7", "7 is above the maximum 6", id="dow-range-to-7"),
        pytest.param("*/0 * * * *", "minute field '*/0': the step", id="step-zero"),
        pytest.param("*/x * * * *", "the step", id="step-word"),
        pytest.param("1/2/3 * * * *", "one '/'", id="two-slashes"),
        pytest.param("1-2-3 * * * *", "one '-'", id="two-hyphens"),
        pytest.param("5-1 * * * *", "'5-1' runs backwards", id="backwards-range"),
        pytest.param("0 0 * mar-jan *", "'mar-jan' runs backwards", id="backwards-names"),
        pytest.param("1,,2 * * * *", "'' is not a number", id="empty-list-item"),
        pytest.param("+5 * * * *", "'+5' is not a number", id="signed"),
        pytest.param("0 0 L * *", "'L' is not a number", id="last-day"),
        pytest.param("0 0 1W * *", "'1W' is not a number", id="weekday"),
        pytest.param("0 0 * * 1#2", "'1#2' is not a number or a name", id="nth-weekday"),
        pytest.param("H * * * *", "'H' is not a number", id="hash"),
        pytest.param("0 0 * * mon-foo", "'foo' is not a number or a name", id="bad-name"),
        pytest.param("0 0 * jan-dec sunday", "'sunday'", id="long-name"),
        pytest.param("0 0 30 2 *", "never runs", id="february-30"),
        pytest.param("0 0 31 4,6,9,11 *", "never runs", id="thirty-day-months-31"),
    ],
)
def test_schedule_problem_says_why(schedule: str, problem: str) -> None:
    found = cron.schedule_problem(schedule)
    assert found is not None and problem in found, found
    assert found.startswith(f"schedule {schedule!r}: ")
    with pytest.raises(ValueError, match=re.escape(found)):
        cron.next_run(schedule, AFTER)


def test_every_seconds_refuses_what_schedule_problem_refuses() -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        cron.every_seconds("@every 0s")


# -- the CRD schema's pattern: the parser's syntax, for the API server ------------------------


@pytest.mark.parametrize(
    "schedule",
    ["@every 0s", "@every 0h0m", "@every 0.0s", "@every -1h", "@reboot", "soon", "0 0 * *"],
)
def test_the_pattern_refuses_at_the_api_server(schedule: str) -> None:
    assert re.search(cron.PATTERN, schedule) is None


_FIELD = st.sampled_from(
    ["*", "?", "0", "5", "7", "31", "59", "60", "jan", "MON", "L", "1-5", "5-1", "*/15", "1,2",
     "3/0", "1#2"]
)  # fmt: skip
_DURATION = st.lists(
    st.tuples(
        st.sampled_from(["0", "1", "1.5", ".5", "2.", "00"]),
        st.sampled_from(["ns", "us", "µs", "μs", "ms", "s", "m", "h", "x", ""]),
    ).map("".join),
    max_size=3,
).map("".join)
_SCHEDULES = st.one_of(
    st.lists(_FIELD, min_size=4, max_size=6).map(" ".join),
    st.tuples(
        st.sampled_from(["@every ", "@every", "@every  ", "@every -", "@every +"]), _DURATION
    ).map("".join),
    st.sampled_from([*cron.DESCRIPTORS, "@reboot"]),
    st.text(max_size=8),
)


@given(_SCHEDULES)
def test_whatever_the_parser_accepts_the_pattern_accepts(schedule: str) -> None:
    # The models check the parser only: the API server must never refuse what they admit.
    # (The pattern was also checked with Go's regexp, which the API server uses, on 30,000 of
    # these: the same answer for each.)
    if cron.schedule_problem(schedule) is None:
        assert re.search(cron.PATTERN, schedule), schedule


@pytest.mark.parametrize(
    "schedule",
    ["@every 1h30m", "@every 0.5s", "@every 1h0m", "@midnight", "0 0 * * mon", " 0 2 * * * "],
)
def test_the_pattern_admits_what_the_parser_accepts(schedule: str) -> None:
    assert cron.schedule_problem(schedule) is None
    assert re.search(cron.PATTERN, schedule)
