"""Shift DICOM dates (DA) and date-times (DT) by whole days.

The output format follows deid's JITTER so that the two engines agree: DA as
``YYYYMMDD``; DT as ``YYYYMMDDHHMMSS.FFFFFF`` plus the original UTC offset.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydicom.multival import MultiValue

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DT = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)


class DateFormatError(ValueError):
    """A DA or DT value that is not in the DICOM format (PS3.5 6.2)."""


def shift_da(value: str, days: int) -> str:
    """Shift one DA value ``YYYYMMDD``."""
    match = _DA.match(value.strip())
    if not match:
        raise DateFormatError("not a DA value (YYYYMMDD)")
    try:
        year, month, day_of_month = (int(g) for g in match.groups())
        day = datetime(year, month, day_of_month)
    except ValueError as exc:
        raise DateFormatError("not a calendar date") from exc
    return (day + timedelta(days=days)).strftime("%Y%m%d")


def shift_dt(value: str, days: int) -> str:
    """Shift one DT value; missing components default to their minimum."""
    match = _DT.match(value.strip())
    if not match:
        raise DateFormatError("not a DT value (YYYYMMDDHHMMSS.FFFFFF&ZZXX)")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError as exc:
        raise DateFormatError("not a calendar date-time") from exc
    shifted = (moment + timedelta(days=days)).strftime("%Y%m%d%H%M%S.%f")
    return shifted + (offset or "")


def shift_value(value: object, vr: str, days: int) -> str:
    """Shift a DA or DT element value (one or several, backslash-joined).

    Raises
    ------
    DateFormatError
        When any value cannot be read; the caller decides how to fail closed.
    """
    values = list(value) if isinstance(value, (list, MultiValue)) else [value]
    shift = shift_da if vr == "DA" else shift_dt
    if vr not in ("DA", "DT"):
        raise DateFormatError(f"cannot shift a {vr} value by days")
    return "\\".join(shift(str(v), days) for v in values)
