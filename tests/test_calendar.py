"""Business-time arithmetic: weekends, holidays, lunch breaks, midnight, DST, away periods, and its laws."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.core.calendar import BusinessCalendar, NoWorkingTime
from leadflow.schemas.policy import CalendarSpec, PolicyError, load_policy, parse_policy

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600.0
WEEKDAYS_9_TO_6 = {day: ["09:00-12:00", "13:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")}


def calendar(
    hours: dict[str, list[str]] | None = None, zone: str = "America/Sao_Paulo", **extra: object
) -> BusinessCalendar:
    spec = CalendarSpec.model_validate({"timezone": zone, "hours": hours or WEEKDAYS_9_TO_6, **extra})
    return BusinessCalendar.from_spec(spec)


def local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone)  # type: ignore[misc]


SALES = calendar(national_holidays={"country": "BR", "subdivision": "SP"}, holidays=["2026-12-24"])
ALWAYS_NY = calendar(
    {day: ["00:00-00:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}, "America/New_York"
)
NIGHT_NY = calendar({day: ["01:00-04:00"] for day in ("sun",)}, "America/New_York")


@pytest.mark.parametrize(
    ("start", "hours", "deadline"),
    [
        ((2026, 11, 23, 10, 0), 1, (2026, 11, 23, 11, 0)),  # Monday, inside the morning
        ((2026, 11, 23, 11, 30), 1, (2026, 11, 23, 13, 30)),  # across lunch
        ((2026, 11, 23, 17, 30), 1, (2026, 11, 24, 9, 30)),  # across the night
        ((2026, 11, 27, 17, 0), 2, (2026, 11, 30, 10, 0)),  # Friday evening to Monday
        ((2026, 11, 28, 15, 0), 1, (2026, 11, 30, 10, 0)),  # from a Saturday
        ((2026, 11, 23, 7, 0), 8, (2026, 11, 23, 18, 0)),  # before opening: the whole day
        ((2026, 4, 20, 17, 0), 2, (2026, 4, 22, 10, 0)),  # Tuesday 21 April: Tiradentes, a national holiday
        ((2026, 12, 23, 17, 0), 2, (2026, 12, 28, 10, 0)),  # 24 company day off, 25 Christmas, then weekend
        ((2026, 11, 20, 10, 0), 1, (2026, 11, 23, 10, 0)),  # Friday 20 Nov, Consciência Negra: national since 2024
    ],
)
def test_add_business_hours(start: tuple[int, ...], hours: float, deadline: tuple[int, ...]) -> None:
    assert SALES.add(local(SAO_PAULO, *start), hours * HOUR) == local(SAO_PAULO, *deadline)


def test_zero_allowance_is_the_start() -> None:
    start = local(SAO_PAULO, 2026, 11, 28, 3, 0)
    assert SALES.add(start, 0) == start


def test_elapsed_counts_only_working_time() -> None:
    friday_5pm = local(SAO_PAULO, 2026, 11, 27, 17, 0)
    monday_10am = local(SAO_PAULO, 2026, 11, 30, 10, 0)
    assert SALES.elapsed(friday_5pm, monday_10am) == 2 * HOUR
    assert SALES.elapsed(monday_10am, friday_5pm) == 0.0


def test_spring_forward_day_is_23_hours_long() -> None:
    saturday_noon = local(NEW_YORK, 2026, 3, 7, 12, 0)
    deadline = ALWAYS_NY.add(saturday_noon, 24 * HOUR)
    assert deadline == local(NEW_YORK, 2026, 3, 8, 13, 0)  # 24 real hours: the clock skipped 02:00-03:00
    assert ALWAYS_NY.elapsed(local(NEW_YORK, 2026, 3, 8, 0, 0), local(NEW_YORK, 2026, 3, 9, 0, 0)) == 23 * HOUR


def test_fall_back_day_is_25_hours_long() -> None:
    assert ALWAYS_NY.elapsed(local(NEW_YORK, 2026, 11, 1, 0, 0), local(NEW_YORK, 2026, 11, 2, 0, 0)) == 25 * HOUR


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 8), 2), (date(2026, 11, 1), 4), (date(2026, 11, 8), 3)])
def test_a_night_window_across_a_dst_change_counts_real_time(day: date, hours: int) -> None:
    opens = datetime.combine(day, time(0), tzinfo=NEW_YORK)
    assert NIGHT_NY.elapsed(opens, opens + timedelta(hours=6)) == hours * HOUR


def test_a_window_that_ends_at_midnight() -> None:
    late = calendar({"mon": ["22:00-00:00"], "tue": ["00:00-02:00"]})
    start = local(SAO_PAULO, 2026, 11, 23, 23, 0)
    assert late.add(start, 2 * HOUR) == local(SAO_PAULO, 2026, 11, 24, 1, 0)
    assert late.elapsed(local(SAO_PAULO, 2026, 11, 23, 0, 0), local(SAO_PAULO, 2026, 11, 25, 0, 0)) == 4 * HOUR


def test_away_periods_are_not_working_time() -> None:
    spec = CalendarSpec.model_validate({"timezone": "America/Sao_Paulo", "hours": WEEKDAYS_9_TO_6})
    away = ((local(SAO_PAULO, 2026, 11, 23, 10, 0), local(SAO_PAULO, 2026, 11, 24, 11, 0)),)
    owner = BusinessCalendar.from_spec(spec, away=away)
    assert owner.add(local(SAO_PAULO, 2026, 11, 23, 9, 0), 2 * HOUR) == local(SAO_PAULO, 2026, 11, 24, 12, 0)
    assert not owner.is_working(local(SAO_PAULO, 2026, 11, 23, 15, 0))
    assert owner.is_working(local(SAO_PAULO, 2026, 11, 24, 11, 0))


def test_a_calendar_without_working_time_says_so() -> None:
    closed = calendar({"mon": ["09:00-10:00"]}, holidays=[])
    never = BusinessCalendar(zone=SAO_PAULO, hours={})
    assert closed.add(local(SAO_PAULO, 2026, 11, 23, 9, 0), HOUR) == local(SAO_PAULO, 2026, 11, 23, 10, 0)
    with pytest.raises(NoWorkingTime):
        never.add(local(SAO_PAULO, 2026, 11, 23, 9, 0), HOUR)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not an IANA time zone"),
        ({"hours": {"mon": ["18:00-09:00"]}}, "end 09:00 must be after start 18:00"),
        ({"hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "hours.mon: working windows overlap"),
        ({"hours": {"monday": ["09:00-12:00"]}}, "must be 'mon', 'tue'"),
        ({"national_holidays": {"country": "BR", "subdivision": "XX"}}, "subdivision 'XX' is not one of BR's"),
    ],
)
def test_bad_calendars_are_explained(change: dict[str, object], problem: str) -> None:
    document = load_policy().model_dump(mode="json", by_alias=True, exclude={"calendars"})
    document["calendars"] = {"team": {"timezone": "America/Sao_Paulo", "hours": WEEKDAYS_9_TO_6, **change}}
    with pytest.raises(PolicyError) as error:
        parse_policy(document)
    assert any(problem in line for line in error.value.problems), error.value.problems


def test_the_default_policy_ships_team_calendars() -> None:
    policy = load_policy()
    sales = BusinessCalendar.from_spec(policy.calendars["inside_sales"])
    assert sales.is_holiday(date(2026, 12, 25))
    assert sales.is_working(local(SAO_PAULO, 2026, 11, 24, 10, 0))


# -- laws, over calendars with DST, holidays, breaks and away time ----------------------------------------------

CALENDARS = [
    SALES,
    ALWAYS_NY,
    NIGHT_NY,
    calendar(
        {"mon": ["08:00-12:00"], "wed": ["14:00-00:00"], "sat": ["00:00-03:00"]},
        "America/New_York",
        holidays=["2026-11-04"],
    ),
]
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
allowances = st.floats(min_value=0, max_value=300 * HOUR, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CALENDARS), instants, allowances)
def test_adding_then_measuring_gives_back_the_allowance(cal: BusinessCalendar, start: datetime, seconds: float) -> None:
    deadline = cal.add(start, seconds)
    assert deadline >= start
    assert cal.elapsed(start, deadline) == pytest.approx(seconds, abs=1e-3)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CALENDARS), instants, st.floats(min_value=1, max_value=300 * HOUR))
def test_a_deadline_never_falls_outside_working_time(cal: BusinessCalendar, start: datetime, seconds: float) -> None:
    deadline = cal.add(start, seconds)
    assert cal.is_working(deadline - timedelta(microseconds=1))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CALENDARS), instants, instants, instants)
def test_elapsed_is_monotone_and_additive(cal: BusinessCalendar, a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    assert 0 <= cal.elapsed(a, b) <= cal.elapsed(a, c)
    assert cal.elapsed(a, b) + cal.elapsed(b, c) == pytest.approx(cal.elapsed(a, c), abs=1e-3)
