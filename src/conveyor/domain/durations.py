"""Durations as people write them: 90, "90s", "30m", "1h30m", "30d"."""

import re

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = (86400, 3600, 60, 1)


def parse_duration(value: object) -> int:
    """Seconds in `value`; raises ValueError with a message fit for a user."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 90s, 30m, 1h or 30d")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())) and any(m.groups()):
        seconds = sum(int(g or 0) * unit for g, unit in zip(m.groups(), _UNITS, strict=True))
    else:
        raise ValueError(f"must be a duration like 90s, 30m, 1h or 30d, not {value!r}")
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


def format_duration(seconds: int) -> str:
    """3600 -> "1h", 5400 -> "1h30m", 45 -> "45s": as people write them."""
    parts = []
    for unit, suffix in zip(_UNITS, "dhms", strict=True):
        if seconds >= unit:
            parts.append(f"{seconds // unit}{suffix}")
            seconds %= unit
    return "".join(parts) or "0s"
