"""One shared record of what every component received and answered.

Stage 4 draws its sequence diagram from this, so components record facts, not
guesses: who called, which call, the outcome, and how long it took.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock


@dataclass(frozen=True)
class TraceEvent:
    """One step: ``source`` asked ``target`` for ``call`` and got ``outcome``.

    ``outcome`` is ``"ok"`` or the error code the target answered with (for example
    ``"AccessDenied"``). ``detail`` holds small facts worth showing (role, audience,
    the failed condition); never a secret.
    """

    seq: int
    at: float
    source: str
    target: str
    call: str
    outcome: str
    duration_ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class Trace:
    """A thread-safe, bounded list of :class:`TraceEvent`."""

    def __init__(self, clock: Clock | None = None, limit: int = 10_000) -> None:
        self._clock = clock or SystemClock()
        self._events: list[TraceEvent] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._limit = limit

    def record(
        self,
        source: str,
        target: str,
        call: str,
        outcome: str = "ok",
        *,
        duration_ms: float = 0.0,
        **detail: Any,
    ) -> TraceEvent:
        with self._lock:
            self._seq += 1
            ev = TraceEvent(
                self._seq,
                self._clock.now(),
                source,
                target,
                call,
                outcome,
                round(duration_ms, 3),
                dict(detail),
            )
            self._events.append(ev)
            if len(self._events) > self._limit:
                del self._events[: len(self._events) - self._limit]
            return ev

    def mark(self) -> int:
        """The sequence number of the last event; pass it to :meth:`since`."""
        with self._lock:
            return self._seq

    def since(self, mark: int) -> list[TraceEvent]:
        with self._lock:
            return [e for e in self._events if e.seq > mark]

    def events(self) -> list[TraceEvent]:
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.events())

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)
