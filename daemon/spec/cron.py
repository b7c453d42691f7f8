"""Crontab expressions with crontab semantics, translated for APScheduler.

APScheduler 3.x reads day-of-week 0 as Monday, crontab as Sunday; numbers are therefore
expanded here to day names so `0 9 * * 0` fires on Sunday as everyone expects.
"""

from __future__ import annotations

import re
from functools import lru_cache

from apscheduler.triggers.cron import CronTrigger as _APCron

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# APScheduler's messages repeat the value, which each problem already names.
_APS_PREFIX = re.compile(r"^(?:Error validating )?expression '[^']*': ")
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _day_number(token: str) -> int:
    token = token.strip().lower()
    if token[:3] in _DAYS and not token.isdigit():
        return _DAYS.index(token[:3])
    if not token.isdigit():
        raise ValueError(f"{token!r} is not a day of the week (0-7 or sun-sat)")
    value = int(token)
    if not 0 <= value <= 7:
        raise ValueError(f"day of week {value} is out of range 0-7")
    return value % 7


def _expand_dow(field: str) -> list[int]:
    days: set[int] = set()
    for item in field.split(","):
        rng, _, step_text = item.partition("/")
        if step_text and not step_text.isdigit():
            raise ValueError(f"step {step_text!r} is not a number")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError("step must be positive")
        if rng == "*":
            lo, hi = 0, 6
        elif "-" in rng:
            a, b = rng.split("-", 1)
            lo, hi = _day_number(a), _day_number(b)
            if b.strip() == "7":
                hi = 7
            if hi < lo:
                raise ValueError(f"day-of-week range {rng} runs backwards")
        else:
            lo = _day_number(rng)
            hi = 6 if step_text else lo
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return sorted(days)


@lru_cache(maxsize=16384)
def check_crontab(expr: str) -> None:
    """Raise ValueError if `expr` is not a valid crontab (cached: thousands of files repeat)."""
    parse_crontab(expr, "UTC")


def parse_crontab(expr: str, timezone: str) -> _APCron:
    """Build an APScheduler trigger from a 5-field crontab expression or an @macro."""
    text = _MACROS.get(expr.strip().lower(), expr.strip())
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"cron expression {expr!r} needs 5 fields (minute hour day month weekday)")
    minute, hour, day, month, dow = fields
    try:
        days = _expand_dow(dow)
        dow_names = "*" if len(days) == 7 else ",".join(_DAYS[d] for d in days)
        trigger = _APCron(
            minute=minute, hour=hour, day=day, month=month, day_of_week=dow_names, timezone=timezone
        )
    except ValueError:
        raise ValueError(_every_problem(fields)) from None
    if day != "*" and dow != "*":
        # crontab ORs the two day fields, APScheduler ANDs them: refuse rather than surprise.
        raise ValueError("restrict either day-of-month or day-of-week, not both")
    return trigger


def _every_problem(fields: list[str]) -> str:
    """Each bad field of a crontab with what is wrong with it, so one edit fixes them all."""
    problems = []
    for name, value in zip(("minute", "hour", "day", "month"), fields, strict=False):
        try:
            _APCron(**{name: value}, timezone="UTC")
        except ValueError as exc:
            why = _APS_PREFIX.sub("", str(exc))
            problems.append(f"{name} {value!r}: {why}")
    try:
        _expand_dow(fields[4])
    except ValueError as exc:
        problems.append(f"weekday {fields[4]!r}: {exc}")
    return "; ".join(problems) or f"cron expression {' '.join(fields)!r} is not valid"
