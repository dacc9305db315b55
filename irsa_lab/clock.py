"""Injectable clocks.

Everything that reads the time takes a :class:`Clock`, so a test or a notebook can
freeze or step it. ``SystemClock`` is the wall clock; ``ManualClock`` moves only
when told to.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "LAB_EPOCH", "ManualClock", "SystemClock", "iso8601_ms", "rfc3339", "utc"]


class Clock(Protocol):
    """Something that tells the time in seconds since the Unix epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that stands still until :meth:`advance` or :meth:`set` moves it."""

    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = float(when)


# The instant deterministic labs start at: 2024-03-27 14:00:00 UTC, shortly after the
# article's bucket was created.
LAB_EPOCH = datetime(2024, 3, 27, 14, 0, 0, tzinfo=UTC).timestamp()


def utc(ts: float) -> datetime:
    """A timezone-aware UTC datetime for epoch seconds."""
    return datetime.fromtimestamp(ts, tz=UTC)


def rfc3339(ts: float) -> str:
    """``2024-03-27T14:00:00Z``: the form Kubernetes and AWS JSON use."""
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso8601_ms(ts: float) -> str:
    """``2024-03-27T14:00:00.000Z``: the form AWS XML responses use."""
    d = utc(ts)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
