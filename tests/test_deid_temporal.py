"""Date shifting and age strings."""

from __future__ import annotations

import pytest

from gateway.deid.temporal import age_string, shift_date, shift_datetime


@pytest.mark.parametrize(
    ("value", "days", "shifted"),
    [
        ("20240301", 1, "20240229"),
        ("20240301", 366, "20230301"),
        ("2024.03.01", 1, "20240229"),
        ("", 5, ""),
        ("yesterday", 5, ""),
        ("20241341", 5, ""),
    ],
)
def test_shift_date(value: str, days: int, shifted: str) -> None:
    assert shift_date(value, days) == shifted


@pytest.mark.parametrize(
    ("value", "days", "shifted"),
    [
        ("20240301101500.123+0100", 1, "20240229101500.123+0100"),
        ("20240301", 1, "20240229"),
        ("202403", 1, "202402"),
        ("2024", 400, "2022"),
        ("not a date", 1, ""),
    ],
)
def test_shift_datetime_keeps_precision_time_and_offset(value: str, days: int, shifted: str) -> None:
    assert shift_datetime(value, days) == shifted


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        ("19800615", "20240614", "043Y"),
        ("19800615", "20240615", "044Y"),
        ("20230101", "20240101", "012M"),
        ("20240101", "20240115", "014D"),
        ("20240115", "20240101", None),
        ("", "20240101", None),
    ],
)
def test_age_string(birth: str, on: str, age: str | None) -> None:
    assert age_string(birth, on) == age
