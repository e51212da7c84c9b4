"""Small value rules the gallery's parts share: times as stored, ids."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _fmt_time(t: datetime) -> str:
    # a naive datetime is local time, as everywhere in Python
    return t.astimezone(timezone.utc).strftime(_TIME_FORMAT)


def _parse_time(s: str | None) -> datetime | None:
    if s is None:
        return None
    return datetime.strptime(s, _TIME_FORMAT).replace(tzinfo=timezone.utc)


def _check_id(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"a {what} id is an int, got {type(value).__name__}")
    return int(value)
