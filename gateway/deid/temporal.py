"""Date shifting for the Retain Longitudinal Temporal Information with Modified Dates option.

Dates move by a whole number of days per patient, so every interval between two of a patient's
dates and date-times is preserved exactly and every time of day stays as it was (TM values
need no change and a date/time pair stays consistent). A value that cannot be parsed is
emptied rather than passed on: it might be a date in a form we do not recognise.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_DA = re.compile(r"^(\d{4})(\d{2})?(\d{2})?$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d*(?:\.\d+)?)?([+-]\d{4})?$")


def shift_date(value: str, days: int) -> str:
    """Shift a DA value (``YYYYMMDD``; legacy ``YYYY.MM.DD`` accepted) back by ``days``."""
    return _shift(_DA, value.strip().replace(".", ""), days)


def shift_datetime(value: str, days: int) -> str:
    """Shift the date part of a DT value back by ``days``, keeping its precision and offset."""
    return _shift(_DT, value.strip(), days)


def _shift(pattern: re.Pattern[str], value: str, days: int) -> str:
    match = pattern.match(value)
    if not match:
        return ""
    year, month, day = match[1], match[2], match[3]
    try:
        moved = date(int(year), int(month or 1), int(day or 1)) - timedelta(days=days)
    except (ValueError, OverflowError):
        return ""
    text = f"{moved.year:04d}"
    if month:
        text += f"{moved.month:02d}"
    if day:
        text += f"{moved.day:02d}"
    return text + "".join(g or "" for g in match.groups()[3:])


def age_string(birth_date: str, on_date: str) -> str | None:
    """Age (AS) of someone born on ``birth_date`` at ``on_date`` (both DA), or None.

    Days under a month, months under two years, years above (capped at 999Y).
    """
    try:
        born = date(int(birth_date[:4]), int(birth_date[4:6]), int(birth_date[6:8]))
        then = date(int(on_date[:4]), int(on_date[4:6]), int(on_date[6:8]))
    except (ValueError, IndexError):
        return None
    if then < born:
        return None
    months = (then.year - born.year) * 12 + then.month - born.month - (then.day < born.day)
    if months < 1:
        return f"{(then - born).days:03d}D"
    if months < 24:
        return f"{months:03d}M"
    return f"{min(months // 12, 999):03d}Y"
