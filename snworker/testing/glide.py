"""The server-side script values the stub evaluates: `javascript:` in queries and defaults.

    javascript:gs.getUserID()                    the signed-in user's sys_id
    javascript:gs.daysAgoStart(1)                yesterday, 00:00:00
    javascript:gs.dateGenerate('2024-01-31','end')
    javascript:gs.dateGenerate('2024-01-31 12:00:00')
    javascript:getNextObjNumberPadded();         a column default: the table's next number

Only these known expressions are evaluated, on the stub's clock (so `advance()` moves them);
any other script evaluates to None and the caller decides what that means.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from snworker.testing import platform

Value = str | list[str]

_CALL: Final = re.compile(r"(?:gs\.)?(?:getUser\(\)\.)?(\w+)\((.*)\)")
_CURRENT: Final = re.compile(r"current\.(\w+)")
_ARGUMENT: Final = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)"|(-?\d+))\s*(?:,|$)""")
_PERIODS: Final = {"Today": 0, "Yesterday": 1, "Tomorrow": -1}
_UNITS: Final = ("Week", "Month", "Quarter", "Year")
_RELATIVE: Final = {"This": 0, "Last": 1, "Next": -1}
_LAST_SPANS: Final = {
    "15Minutes": timedelta(minutes=15),
    "30Minutes": timedelta(minutes=30),
    "45Minutes": timedelta(minutes=45),
    "60Minutes": timedelta(hours=1),
    "Hour": timedelta(hours=1),
    "2Hours": timedelta(hours=2),
    "12Hours": timedelta(hours=12),
}


@dataclass(frozen=True, slots=True)
class ScriptContext:
    """What a script may read: the clock, the user, and the record being written."""

    now: float
    user_sys_id: str = ""
    user_name: str = ""
    groups: Callable[[], list[str]] = list
    next_number: Callable[[], str] | None = None
    current: Mapping[str, str] = field(default_factory=dict)


def is_script(text: str) -> bool:
    """Whether a value is a `javascript:` expression."""
    return text.startswith(platform.SCRIPT_PREFIX)


def format_time(moment: datetime) -> str:
    """A date-time as the platform writes it (UTC)."""
    return moment.strftime(platform.DATETIME_FORMAT)


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _day_end(moment: datetime) -> datetime:
    return moment.replace(hour=23, minute=59, second=59, microsecond=0)


def shift_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (earlier when negative), clamped to the month."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _period(now: datetime, unit: str, offset: int) -> tuple[datetime, datetime]:
    """Start and end of the week, month, quarter or year `offset` periods before now's."""
    today = _day_start(now)
    if unit == "Week":
        start = today - timedelta(days=today.weekday() + 7 * offset)
        return start, _day_end(start + timedelta(days=6))
    months = {"Month": 1, "Quarter": 3, "Year": 12}[unit]
    first = today.replace(day=1)
    first = shift_months(first, -((first.month - 1) % months) if months > 1 else 0)
    if unit == "Year":
        first = today.replace(month=1, day=1)
    start = shift_months(first, -months * offset)
    return start, shift_months(start, months) - timedelta(seconds=1)


def _date_time(name: str, args: list[str], now: datetime) -> datetime | None:
    """The GlideSystem date helpers, by name."""
    count = int(args[0]) if args and re.fullmatch(r"-?\d+", args[0]) else 0
    for unit, step in (("days", timedelta(days=1)), ("hours", timedelta(hours=1)),
                       ("minutes", timedelta(minutes=1))):
        if name.startswith(f"{unit}Ago"):
            moment = now - step * count
            edge = name[len(unit) + 3:]
            if edge == "":
                return moment
            if edge not in ("Start", "End"):
                return None
            start = {"days": _day_start(moment),
                     "hours": moment.replace(minute=0, second=0, microsecond=0),
                     "minutes": moment.replace(second=0, microsecond=0)}[unit]
            return start if edge == "Start" else start + step - timedelta(seconds=1)
    if name.startswith("monthsAgo"):
        moment = shift_months(now, -count)
        start, end = _period(moment, "Month", 0)
        return {"monthsAgo": moment, "monthsAgoStart": start, "monthsAgoEnd": end}.get(name)
    if name.startswith("yearsAgo"):
        return shift_months(now, -12 * count) if name == "yearsAgo" else None
    edge, _, rest = name.partition("Of")
    if edge not in ("beginning", "end"):
        return None
    if rest in _PERIODS:
        day = now - timedelta(days=_PERIODS[rest])
        return _day_start(day) if edge == "beginning" else _day_end(day)
    if rest.startswith("Last") and rest.endswith("Days") and rest[4:-4].isdigit():
        days = int(rest[4:-4])
        return _day_start(now - timedelta(days=days)) if edge == "beginning" else _day_end(now)
    if rest.startswith("Last") and rest[4:] in _LAST_SPANS:
        return now - _LAST_SPANS[rest[4:]] if edge == "beginning" else now
    for relative, offset in _RELATIVE.items():
        unit = rest[len(relative):]
        if rest.startswith(relative) and unit in _UNITS:
            start, end = _period(now, unit, offset)
            return start if edge == "beginning" else end
    return None


def _date_generate(args: list[str]) -> str | None:
    """`dateGenerate('2024-01-31', 'end')`, or one date-time (`'2024-01-31 12:00:00'`)."""
    if len(args) == 1 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", args[0]):
        return args[0]
    if len(args) != 2 or not re.fullmatch(r"\d{4}-\d\d-\d\d", args[0]):
        return None
    time = {"start": "00:00:00", "end": "23:59:59"}.get(args[1], args[1])
    if not re.fullmatch(r"\d\d:\d\d:\d\d", time):
        return None
    return f"{args[0]} {time}"


def _arguments(text: str) -> list[str] | None:
    if not text.strip():
        return []
    arguments, position = [], 0
    while position < len(text):
        match = _ARGUMENT.match(text, position)
        if match is None or match.end() == position:
            return None
        arguments.append(next(g for g in match.groups() if g is not None))
        position = match.end()
    return arguments


def evaluate(text: str, context: ScriptContext) -> Value | None:
    """The value of a `javascript:` expression, or None when the stub does not know it."""
    script = text[len(platform.SCRIPT_PREFIX):].strip().rstrip(";").strip()
    current = _CURRENT.fullmatch(script)
    if current is not None:
        return context.current.get(current.group(1), "")
    call = _CALL.fullmatch(script)
    args = None if call is None else _arguments(call.group(2))
    if call is None or args is None:
        return None
    name = call.group(1)
    now = datetime.fromtimestamp(context.now, UTC).replace(microsecond=0)
    if name == "getUserID":
        return context.user_sys_id
    if name == "getUserName":
        return context.user_name
    if name == "getMyGroups":
        return context.groups()
    if name == "getNextObjNumberPadded":
        return None if context.next_number is None else context.next_number()
    if name in ("nowDateTime", "nowNoTZ"):
        return format_time(now)
    if name == "now":
        return now.strftime(platform.DATE_FORMAT)
    if name == "dateGenerate":
        return _date_generate(args)
    moment = _date_time(name, args, now)
    return None if moment is None else format_time(moment)


def relative_time(unit: str, direction: str, count: str, now: float) -> str | None:
    """`RELATIVEGT@hour@ago@3`: the moment `count` units before (`ago`) or after (`ahead`) now."""
    if direction not in ("ago", "ahead") or not re.fullmatch(r"\d+", count):
        return None
    sign = -1 if direction == "ago" else 1
    moment = datetime.fromtimestamp(now, UTC).replace(microsecond=0)
    steps = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1),
             "dayofweek": timedelta(days=1), "week": timedelta(weeks=1)}
    if unit in steps:
        return format_time(moment + sign * int(count) * steps[unit])
    months = {"month": 1, "quarter": 3, "year": 12}.get(unit)
    if months is None:
        return None
    return format_time(shift_months(moment, sign * months * int(count)))
