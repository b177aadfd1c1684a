"""CronJob schedules: whether one is usable, and when it runs. Pure: the caller passes the time.

The one parser behind the Database model, the webhooks' Database admission and the operator's
planning, so that they cannot disagree. The language is what a Kubernetes CronJob accepts
(robfig/cron ``ParseStandard``): five cron fields, a descriptor such as ``@daily``, or
``@every <Go duration>``. It is stricter where a backup schedule makes no sense: ``@every``
must be longer than zero (a CronJob would run it every second) and a cron expression must
match some date (``0 0 30 2 *`` never runs). croniter computes the runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
from collections.abc import Iterator, Mapping

import croniter

DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
EVERY = "@every "

# Go's time.ParseDuration, without the sign: a decimal number and a unit, repeated.
_UNIT_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,  # micro sign
    "μs": 10**3,  # Greek mu
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_UNITS = "ns|us|µs|μs|ms|s|m|h"  # "ms" before "m", so that 1ms is not read as 1m and "s"
_NUMBER = r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+"
_NONZERO_NUMBER = r"[0-9]*[1-9][0-9]*(?:\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*"
_PART = re.compile(rf"({_NUMBER})({_UNITS})")
_DURATION = re.compile(rf"(?:(?:{_NUMBER})(?:{_UNITS}))+")
_LONGEST_NS = 2**63 - 1  # a Go duration is an int64 of nanoseconds (about 292 years)
_DURATION_HELP = "a Go duration such as 90m, 1h30m or 1.5h (units ns, us, µs, ms, s, m, h)"

_CRON_FIELD = r"[0-9A-Za-z*?,/-]+"
PATTERN = (
    "^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)"
    rf"|@every \+?((({_NUMBER})({_UNITS}))*({_NONZERO_NUMBER})({_UNITS})(({_NUMBER})({_UNITS}))*)"
    rf"|\s*{_CRON_FIELD}(\s+{_CRON_FIELD}){{4}}\s*)$"
)
"""The syntax :func:`schedule_problem` accepts, for the CRD schema (Go RE2 and Python regexp).

Everything the parser accepts matches it; the parser also checks what a pattern cannot: field
ranges, names, durations below a nanosecond or beyond Go's longest, dates that never come."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = dataclasses.field(default_factory=dict)


_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()
_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, {name: n for n, name in enumerate(_MONTHS, start=1)}),
    _Field("day-of-week", 0, 6, {name: n for n, name in enumerate(_DAYS)}),
)
# Where "does it ever run?" is asked: a fixed moment, so every replica gives the same answer.
_PROBE_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def schedule_problem(schedule: str) -> str | None:
    """Why ``schedule`` cannot drive a backup CronJob, as one sentence for the user; or None."""
    if schedule in DESCRIPTORS:
        return None
    if _is_every(schedule):
        try:
            _every_ns(schedule)
        except ValueError as exc:
            return str(exc)
        return None
    if schedule.startswith("@"):
        return (
            f"schedule {schedule!r}: unsupported descriptor (use {', '.join(DESCRIPTORS)}, "
            "@every <duration> or five cron fields)"
        )
    return _cron_problem(schedule)


def every_seconds(schedule: str) -> float | None:
    """The interval of an ``@every`` schedule in seconds; None for any other kind of schedule.

    Raises ValueError, saying why, for a duration Go refuses and for zero or negative ones."""
    if not _is_every(schedule):
        return None
    return _every_ns(schedule) / 1e9


def runs(
    schedule: str, after: dt.datetime, *, since: dt.datetime | None = None
) -> Iterator[dt.datetime]:
    """Every time a CronJob on ``schedule`` starts a run after ``after``, in order, endlessly.

    Cron fields and descriptors are read in ``after``'s time zone. ``@every`` runs are counted
    from ``since`` (the CronJob's last scheduled run, else its creation), as the CronJob
    controller counts them; from ``after`` without it. Raises ValueError (the message is
    :func:`schedule_problem`'s) for a schedule that cannot run.
    """
    problem = schedule_problem(schedule)
    if problem:
        raise ValueError(problem)
    if schedule.startswith(EVERY):
        # robfig/cron waits whole seconds between @every runs, and at least one.
        period = dt.timedelta(seconds=max(1, _every_ns(schedule) // 10**9))
        start = since or after
        first = start + period * (max(0, (after - start) // period) + 1)
        return (first + period * n for n in itertools.count())
    return _cron_runs(schedule, after)


def next_run(schedule: str, after: dt.datetime, *, since: dt.datetime | None = None) -> dt.datetime:
    """The first run after ``after`` (see :func:`runs`)."""
    return next(runs(schedule, after, since=since))


def _is_every(schedule: str) -> bool:
    return schedule.split(" ", 1)[0] == EVERY.strip()


def _every_ns(schedule: str) -> int:
    # robfig/cron hands what follows "@every " to Go as it is: no trimming, one space.
    duration = schedule.removeprefix(EVERY) if schedule.startswith(EVERY) else ""
    sign, body = (duration[0], duration[1:]) if duration[:1] in ("-", "+") else ("", duration)
    if body == "0":  # the one Go duration without a unit
        total = 0
    elif _DURATION.fullmatch(body):
        total = sum(_nanoseconds(number, unit) for number, unit in _PART.findall(body))
    else:
        raise ValueError(f"schedule {schedule!r}: @every needs {_DURATION_HELP}")
    if sign == "-" or total == 0:
        raise ValueError(
            f"schedule {schedule!r}: the interval must be longer than zero "
            "(a CronJob would run it every second)"
        )
    if total > _LONGEST_NS:
        raise ValueError(
            f"schedule {schedule!r}: the interval is beyond Go's longest duration "
            "(2562047h47m16.854775807s, about 292 years)"
        )
    return total


def _nanoseconds(number: str, unit: str) -> int:
    """One part of a Go duration; the fraction is truncated to whole nanoseconds, as Go does."""
    whole, _, fraction = number.partition(".")
    scale = _UNIT_NS[unit]
    out = int(whole or "0") * scale
    if fraction:
        out += int(fraction) * scale // 10 ** len(fraction)
    return out


def _cron_problem(schedule: str) -> str | None:
    fields = schedule.split()
    if len(fields) != len(_FIELDS):
        return (
            f"schedule {schedule!r}: a cron schedule has exactly five fields (minute, hour, "
            f"day of month, month, day of week), not {len(fields)}"
        )
    for text, field in zip(fields, _FIELDS, strict=True):
        for item in text.split(","):
            problem = _item_problem(item, field)
            if problem:
                return f"schedule {schedule!r}: {field.name} field {text!r}: {problem}"
    try:
        next(_cron_runs(schedule, _PROBE_START))
    except ValueError as exc:
        return str(exc)
    return None


def _item_problem(item: str, field: _Field) -> str | None:
    """One comma-separated part of a field, checked as robfig/cron's ``getRange`` does."""
    span, slash, step = item.partition("/")
    if "/" in step:
        return f"{item!r} has more than one '/'"
    if span in ("*", "?"):
        low, high = field.low, field.high
    else:
        first, dash, last = span.partition("-")
        if "-" in last:
            return f"{item!r} has more than one '-'"
        ends = []
        for text in (first, last) if dash else (first,):
            value = _value(text, field)
            if value is None:
                return f"{text!r} is not {'a number or a name' if field.names else 'a number'}"
            ends.append(value)
        low, high = ends[0], ends[-1]
        if slash and not dash:
            high = field.high  # "5/15": from 5 to the end of the range, every 15
        if low > high:
            return f"the range {span!r} runs backwards"
    if slash and not (re.fullmatch("[0-9]+", step) and int(step) > 0):
        return f"the step {step!r} must be a whole number above zero"
    if low < field.low:
        return f"{low} is below the minimum {field.low}"
    if high > field.high:
        return f"{high} is above the maximum {field.high}"
    return None


def _value(text: str, field: _Field) -> int | None:
    if re.fullmatch("[0-9]+", text):
        return int(text)
    return field.names.get(text.lower())


def _cron_runs(schedule: str, after: dt.datetime) -> Iterator[dt.datetime]:
    times = croniter.croniter(schedule, after)
    while True:
        try:
            yield times.get_next(dt.datetime)
        except croniter.CroniterBadDateError:
            raise ValueError(
                f"schedule {schedule!r}: no date matches it, so it never runs"
            ) from None
